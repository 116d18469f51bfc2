/* reflabel evaluate: Dice, IoU, HD95 and ASSD of predictions against
 * reference label maps. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "reflabel/evaluate.h"

static const char *evaluate_usage =
    "usage: reflabel evaluate --pred DIR --gt DIR [--labels dataset.json] [--json FILE]\n"
    "\n"
    "Scores every reference label map of --gt (CASE.nii.gz, CASE.png, ...) against the\n"
    "prediction of the same name in --pred: per case and per class Dice, IoU, HD95 and\n"
    "ASSD in mm (MONAI's definitions; see docs/METRICS.md for empty masks). Prints the\n"
    "per-class means and writes all numbers as JSON (default PRED/summary.json).\n"
    "With a dataset.json marked \"reflabel_multilabel\": true, the label maps are bit\n"
    "sets and each structure's binary mask is scored on its own.\n"
    "\n"
    "  --labels FILE   dataset.json whose \"labels\" name the classes (and \"ignore\")\n"
    "  --json FILE     where to write the JSON report\n";

static void print_stat(const rl_metric_stats *s) {
    if (s->count) printf(" %7.4f±%-6.4f", s->mean, s->std);
    else printf(" %14s", "n/a");
}

int cli_evaluate_and_report(const char *pred_dir, const char *gt_dir, int num_classes,
                            int32_t ignore_label, char **class_names, const char *json_path,
                            int print_table, rl_error *err) {
    return cli_evaluate_and_report_ex(pred_dir, gt_dir, num_classes, ignore_label, 0,
                                      class_names, json_path, print_table, err);
}

int cli_evaluate_and_report_ex(const char *pred_dir, const char *gt_dir, int num_classes,
                               int32_t ignore_label, int multilabel, char **class_names,
                               const char *json_path, int print_table, rl_error *err) {
    rl_eval_result r;
    int rc = multilabel
                 ? rl_evaluate_folders_multilabel(pred_dir, gt_dir, num_classes, &r, err)
                 : rl_evaluate_folders(pred_dir, gt_dir, num_classes, ignore_label, &r, err);
    if (rc) return rc;
    rc = rl_eval_write_json(&r, (const char *const *)class_names, json_path, err);
    if (!rc && print_table) {
        printf("%-20s %14s %14s %14s %14s\n", "class", "Dice", "IoU", "HD95 mm", "ASSD mm");
        for (int c = 0; c < r.num_classes; c++) {
            char buf[32];
            snprintf(buf, sizeof buf, "%d", c);
            printf("%-20.20s", class_names ? class_names[c] : buf);
            print_stat(&r.per_class[c].dice);
            print_stat(&r.per_class[c].iou);
            print_stat(&r.per_class[c].hd95);
            print_stat(&r.per_class[c].assd);
            putchar('\n');
        }
        printf("%-20s", "foreground mean");
        print_stat(&r.foreground.dice);
        print_stat(&r.foreground.iou);
        print_stat(&r.foreground.hd95);
        print_stat(&r.foreground.assd);
        printf("\n%d cases; report: %s\n", r.num_cases, json_path);
    }
    rl_eval_result_free(&r);
    return rc;
}

/* Class names and the ignore value from a dataset.json "labels" object, and
 * whether it marks bit-set labels ("reflabel_multilabel": true). */
static int read_label_names(const char *path, char ***names, int *count, int32_t *ignore,
                            int *multilabel, rl_error *err) {
    char *text = NULL;
    size_t size = 0;
    int rc = rl_read_file(path, 1u << 20, &text, &size, err);
    if (rc) return rc;
    cJSON *root = cJSON_Parse(text);
    free(text);
    cJSON *labels = root ? cJSON_GetObjectItemCaseSensitive(root, "labels") : NULL;
    if (!cJSON_IsObject(labels)) {
        cJSON_Delete(root);
        return rl_error_set(err, RL_EFORMAT, "%s: no \"labels\" object", path);
    }
    *multilabel = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "reflabel_multilabel"));
    int k = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, labels) {
        if (!cJSON_IsNumber(it) || it->valuedouble != (int)it->valuedouble || it->valueint < 0 ||
            it->valueint > 65535) {
            cJSON_Delete(root);
            return rl_error_set(err, RL_EFORMAT, "%s: label \"%s\" must map to an integer", path,
                                it->string);
        }
        if (strcmp(it->string, "ignore") == 0) *ignore = it->valueint;
        else if (it->valueint + 1 > k) k = it->valueint + 1;
    }
    *names = calloc((size_t)k + 1, sizeof **names);
    if (!*names) {
        cJSON_Delete(root);
        return rl_error_set(err, RL_ENOMEM, "out of memory");
    }
    cJSON_ArrayForEach(it, labels) if (strcmp(it->string, "ignore") != 0)
        (*names)[it->valueint] = strdup(it->string);
    for (int c = 0; c < k; c++)
        if (!(*names)[c]) {
            char buf[32];
            snprintf(buf, sizeof buf, "%d", c);
            (*names)[c] = strdup(buf);
        }
    *count = k;
    cJSON_Delete(root);
    return RL_OK;
}

int cmd_evaluate(int argc, char **argv) {
    const char *pred = NULL, *gt = NULL, *labels = NULL, *json = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(evaluate_usage, stdout);
            return 0;
        } else if (!v) return cli_missing_value("evaluate", a, evaluate_usage);
        else if (!strcmp(a, "--pred")) pred = argv[++i];
        else if (!strcmp(a, "--gt")) gt = argv[++i];
        else if (!strcmp(a, "--labels")) labels = argv[++i];
        else if (!strcmp(a, "--json")) json = argv[++i];
        else return cli_usage_error("evaluate", "unknown option '%s'", a);
    }
    if (!pred || !gt) return cli_usage_error("evaluate", "--pred and --gt are required");
    rl_error err = {0, ""};
    char **names = NULL;
    int k = 0;
    int32_t ignore = RL_METRICS_NO_IGNORE;
    int multilabel = 0;
    if (labels && read_label_names(labels, &names, &k, &ignore, &multilabel, &err))
        return cli_fail(&err);
    char json_path[4096];
    snprintf(json_path, sizeof json_path, "%s", json ? json : "");
    if (!json) snprintf(json_path, sizeof json_path, "%s/summary.json", pred);
    int rc = cli_evaluate_and_report_ex(pred, gt, k, ignore, multilabel, names, json_path, 1, &err);
    for (int c = 0; names && c < k; c++) free(names[c]);
    free(names);
    return rc ? cli_fail(&err) : 0;
}
