/* The report of `reflabel demo` (report.h): overlay panels as RGB PNG and
 * report.html that ties them and the line charts (report_curves.c) to the
 * numbers of the `reflabel evaluate` JSON files. Nothing here trains or
 * scores: every number shown is read from a file that a reflabel command
 * wrote. */
#include "report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "reflabel/dataset.h"
#include "reflabel/image.h"
#include "report_parts.h"

/* ---- colours ------------------------------------------------------------------ */

/* Twelve colours that stay distinguishable from each other and from gray
 * (Trubetskoy's "20 distinct colours", the first twelve). */
static const uint8_t palette[12][3] = {
    {230, 25, 75},  {60, 180, 75},  {255, 225, 25}, {0, 130, 200},
    {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230},
    {210, 245, 60}, {250, 190, 212}, {0, 128, 128}, {170, 110, 40}};

void report_class_color(int c, uint8_t rgb[3]) {
    const uint8_t *p = palette[(c > 0 ? c - 1 : 0) % 12];
    memcpy(rgb, p, 3);
}

static void color_hex(int c, char hex[8]) {
    uint8_t rgb[3];
    report_class_color(c, rgb);
    snprintf(hex, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

/* ---- RGB images and their PNG files ------------------------------------------ */

typedef struct rgb_image {
    uint8_t *px; /* h rows of w (r, g, b) triples */
    int w, h;
} rgb_image;

static int rgb_create(rgb_image *img, int w, int h, uint8_t fill, rl_error *err) {
    img->w = w;
    img->h = h;
    img->px = malloc((size_t)w * (size_t)h * 3);
    if (!img->px) return rl_error_set(err, RL_ENOMEM, "out of memory (%dx%d image)", w, h);
    memset(img->px, fill, (size_t)w * (size_t)h * 3);
    return RL_OK;
}

static void rgb_free(rgb_image *img) {
    free(img->px);
    memset(img, 0, sizeof *img);
}

static int write_png_rgb(const char *path, const rgb_image *img, rl_error *err) {
    return rl_png_write_rgb8(path, img->px, img->w, img->h, err);
}

/* ---- overlay panels ------------------------------------------------------------ */

static int compare_floats(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The gray window of a slice: its 0.5th and 99.5th percentiles, so that a
 * few extreme voxels do not wash out the contrast of the rest. */
static int gray_window(const float *image, size_t n, float *lo, float *hi, rl_error *err) {
    float *sorted = malloc(n * sizeof *sorted);
    if (!sorted) return rl_error_set(err, RL_ENOMEM, "out of memory");
    memcpy(sorted, image, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, compare_floats);
    *lo = sorted[(size_t)(0.005 * (double)(n - 1))];
    *hi = sorted[(size_t)(0.995 * (double)(n - 1))];
    free(sorted);
    return RL_OK;
}

/* One panel of a (h, w) slice: image (h, w) floats, windowed to [lo, hi]
 * as gray; labels (h, w) or NULL: class c > 0 painted in its colour
 * (report.h gives the blend). out: (h * S, w * S) RGB, S = REPORT_PANEL_SCALE.
 * Rows are drawn in reverse order: in the RAS frame of the atlas (and of
 * most NIfTI files) the slice's row index grows towards the front of the
 * head (axial) or the top (coronal, sagittal), and a screen draws row 0 at
 * the top; reversed, the front of the head is up, as in a viewer. */
static int make_panel(const float *image, const int32_t *labels, int h, int w, float lo,
                      float hi, rgb_image *out, rl_error *err) {
    const int S = REPORT_PANEL_SCALE, A = REPORT_OVERLAY_WEIGHT;
    int rc = rgb_create(out, w * S, h * S, 0, err);
    if (rc) return rc;
    float range = hi > lo ? hi - lo : 1.0f;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            float v = (image[i] - lo) / range;
            int gray = (int)lrintf(255.0f * (v < 0 ? 0 : v > 1 ? 1 : v));
            uint8_t rgb[3] = {(uint8_t)gray, (uint8_t)gray, (uint8_t)gray};
            if (labels && labels[i] > 0) {
                uint8_t color[3];
                report_class_color(labels[i], color);
                for (int k = 0; k < 3; k++)
                    rgb[k] = (uint8_t)((gray * (256 - A) + color[k] * A + 128) >> 8);
            }
            int top = (h - 1 - y) * S;
            for (int dy = 0; dy < S; dy++) {
                uint8_t *row = out->px + ((size_t)(top + dy) * out->w + (size_t)x * S) * 3;
                for (int dx = 0; dx < S; dx++) memcpy(row + 3 * dx, rgb, 3);
            }
        }
    }
    return RL_OK;
}

/* Panels (all of the first one's size) in a grid of `columns`, `gap`
 * white pixels between and around them. */
static int make_montage(const rgb_image *panels, int count, int columns, int gap,
                        rgb_image *out, rl_error *err) {
    int rows = (count + columns - 1) / columns, pw = panels[0].w, ph = panels[0].h;
    int rc = rgb_create(out, columns * (pw + gap) + gap, rows * (ph + gap) + gap, 255, err);
    for (int p = 0; !rc && p < count; p++) {
        int left = gap + (p % columns) * (pw + gap), top = gap + (p / columns) * (ph + gap);
        for (int y = 0; y < ph && y < panels[p].h; y++)
            memcpy(out->px + ((size_t)(top + y) * out->w + left) * 3,
                   panels[p].px + (size_t)y * panels[p].w * 3,
                   (size_t)(pw < panels[p].w ? pw : panels[p].w) * 3);
    }
    return rc;
}

/* ---- evaluate JSON ------------------------------------------------------------------- */

static int json_read(const char *path, cJSON **out, rl_error *err) {
    char *data = NULL;
    size_t size = 0;
    int rc = rl_read_file(path, REPORT_MAX_INPUT_BYTES, &data, &size, err);
    if (rc) return rc;
    *out = cJSON_Parse(data);
    free(data);
    return *out ? RL_OK : rl_error_set(err, RL_EFORMAT, "%s: not valid JSON", path);
}

/* root.per_class.<class>.<metric>.<stat> of an evaluate report, or for
 * class_name NULL root.foreground_mean.<metric>.<stat>; NaN when absent or
 * null (evaluate writes NaN as null). */
static double eval_stat(const cJSON *root, const char *class_name, const char *metric,
                        const char *stat) {
    const cJSON *node = class_name
                            ? cJSON_GetObjectItemCaseSensitive(
                                  cJSON_GetObjectItemCaseSensitive(root, "per_class"), class_name)
                            : cJSON_GetObjectItemCaseSensitive(root, "foreground_mean");
    node = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(node, metric), stat);
    return cJSON_IsNumber(node) ? node->valuedouble : NAN;
}

static int eval_cases(const cJSON *root) {
    return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "per_case"));
}

/* Mean foreground Dice of one case of an evaluate report (NaN if absent). */
static double eval_case_dice(const cJSON *root, const char *case_id, char **class_names, int k) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(root, "per_case"), case_id);
    double sum = 0;
    int count = 0;
    for (int i = 1; c && i < k; i++) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(c, class_names[i]), "dice");
        if (cJSON_IsNumber(d)) {
            sum += d->valuedouble;
            count++;
        }
    }
    return count ? sum / count : NAN;
}

/* ---- the report ------------------------------------------------------------------------ */

/* Everything report_write reads, gathered once. */
typedef struct report_state {
    const report_input *in;
    rl_dataset ds;
    int have_ds;
    cJSON *pseudo_eval, *test_eval;
    csv_table log;
    char *labeled; /* RUN_DIR/labeled.txt, one id per line */
    int num_labeled;
    rgb_image overview[6]; /* the first row of each group, for overview.png */
    int overview_count;
    text html;
} report_state;

static void format_number(char *out, size_t size, double v, const char *fmt) {
    if (isfinite(v)) snprintf(out, size, fmt, v);
    else snprintf(out, size, "n/a");
}

/* A label map of the same shape as like, as int32. */
static int read_label_map(const char *path, const rl_volume *like, int32_t **out, rl_error *err) {
    rl_volume v;
    int rc = rl_volume_read_labels(path, &v, err);
    if (rc) return rc;
    if (v.nx != like->nx || v.ny != like->ny || v.nz != like->nz)
        rc = rl_error_set(err, RL_EFORMAT, "%s: %dx%dx%d, but its image is %dx%dx%d", path, v.nx,
                          v.ny, v.nz, like->nx, like->ny, like->nz);
    *out = rc ? NULL : malloc(rl_volume_numel(&v) * sizeof **out);
    if (!rc && !*out) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    if (!rc) rc = rl_labels_from_volume(&v, *out, err);
    rl_volume_free(&v);
    return rc;
}

/* The three panels of one case: image, expert label, and `other` (the
 * prediction or the pseudo-label at other_path), written as
 * png/<stem>_image.png, _expert.png, _<other_name>.png. A 3D case shows its
 * middle axial slice. Panels are returned in panels[3]. */
static int case_panels(report_state *st, const rl_case *c, const char *other_path,
                       const char *stem, const char *other_name, rgb_image panels[3],
                       rl_error *err) {
    const rl_dataset *ds = &st->ds;
    rl_volume *images = calloc((size_t)ds->num_channels, sizeof *images);
    rl_volume expert = {0};
    int32_t *expert_labels = NULL, *other_labels = NULL, *slice_labels[2] = {NULL, NULL};
    float *slice = NULL;
    int rc = images ? rl_dataset_load_case(ds, c, images, &expert, err)
                    : rl_error_set(err, RL_ENOMEM, "out of memory");
    if (rc) {
        free(images);
        return rc;
    }
    const rl_volume *v = &images[0];
    int h, w, z = v->nz / 2;
    rl_slice_shape(v->nx, v->ny, v->nz, 2, &h, &w);
    size_t n = (size_t)h * w;
    expert_labels = malloc(rl_volume_numel(v) * sizeof *expert_labels);
    slice = malloc(n * sizeof *slice);
    slice_labels[0] = malloc(n * sizeof *slice_labels[0]);
    slice_labels[1] = malloc(n * sizeof *slice_labels[1]);
    if (!expert_labels || !slice || !slice_labels[0] || !slice_labels[1])
        rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    if (!rc) rc = rl_labels_from_volume(&expert, expert_labels, err);
    if (!rc) rc = read_label_map(other_path, v, &other_labels, err);
    double spacing[2];
    if (!rc) rc = rl_volume_get_slice(v, 2, z, slice, &h, &w, spacing, err);
    if (!rc)
        rc = rl_labels_get_slice(expert_labels, v->nx, v->ny, v->nz, 2, z, slice_labels[0], err);
    if (!rc)
        rc = rl_labels_get_slice(other_labels, v->nx, v->ny, v->nz, 2, z, slice_labels[1], err);
    float lo = 0, hi = 1;
    if (!rc) rc = gray_window(slice, n, &lo, &hi, err);
    const int32_t *layers[3] = {NULL, slice_labels[0], slice_labels[1]};
    const char *names[3] = {"image", "expert", other_name};
    for (int p = 0; p < 3 && !rc; p++) {
        char path[4096];
        rc = make_panel(slice, layers[p], h, w, lo, hi, &panels[p], err);
        if (!rc)
            rc = cli_make_path(path, sizeof path, err, "%s/png/%s_%s.png", st->in->report_dir, stem,
                           names[p]);
        if (!rc) rc = write_png_rgb(path, &panels[p], err);
    }
    if (rc)
        for (int p = 0; p < 3; p++) rgb_free(&panels[p]);
    rl_dataset_free_case(ds, images, &expert);
    free(images);
    free(expert_labels);
    free(other_labels);
    free(slice);
    free(slice_labels[0]);
    free(slice_labels[1]);
    return rc;
}

/* A table of overlay rows for up to in->overlay_cases cases, evenly spaced
 * over those of `cases` whose `other` file (other_dir/ID<ending>) exists. */
static int overlay_section(report_state *st, text *t, const char *title, const char *note,
                           const rl_case *cases, int num_cases, const char *other_dir,
                           const char *stem, const char *other_name, const char *other_title,
                           const cJSON *eval, rl_error *err) {
    const rl_dataset *ds = &st->ds;
    int *usable = malloc(((size_t)num_cases + 1) * sizeof *usable), n = 0;
    if (!usable) return rl_error_set(err, RL_ENOMEM, "out of memory");
    char path[4096];
    for (int i = 0; i < num_cases; i++) {
        int len = snprintf(path, sizeof path, "%s/%s%s", other_dir, cases[i].id, ds->file_ending);
        if (cases[i].label_path && len < (int)sizeof path && access(path, R_OK) == 0)
            usable[n++] = i;
    }
    text_printf(t, "<h2>");
    text_escaped(t, title);
    text_printf(t, "</h2>\n<p>");
    text_escaped(t, note);
    text_printf(t, "</p>\n<table class=\"overlays\">\n<tr><th>case</th><th>image</th><th>expert "
                   "label</th><th>");
    text_escaped(t, other_title);
    text_printf(t, "</th></tr>\n");
    int shown = n < st->in->overlay_cases ? n : st->in->overlay_cases, rc = RL_OK;
    for (int k = 0; k < shown && !rc; k++) {
        /* evenly spaced, the same rule as --labeled-mode even */
        const rl_case *c = &cases[usable[(int)(((double)k + 0.5) * n / shown)]];
        char row_stem[64];
        snprintf(row_stem, sizeof row_stem, "%s%d", stem, k + 1);
        rgb_image panels[3] = {{0}};
        rc = cli_make_path(path, sizeof path, err, "%s/%s%s", other_dir, c->id, ds->file_ending);
        if (!rc) rc = case_panels(st, c, path, row_stem, other_name, panels, err);
        if (rc) break;
        char dice[32];
        format_number(dice, sizeof dice,
                      eval_case_dice(eval, c->id, ds->class_names, ds->num_classes), "%.3f");
        text_printf(t, "<tr><td><code>");
        text_escaped(t, c->id);
        text_printf(t, "</code><br>mean foreground Dice %s</td>", dice);
        const char *names[3] = {"image", "expert", other_name};
        for (int p = 0; p < 3; p++)
            text_printf(t,
                        "<td><img src=\"png/%s_%s.png\" width=\"%d\" height=\"%d\" "
                        "alt=\"%s\"></td>",
                        row_stem, names[p], panels[p].w, panels[p].h, names[p]);
        text_printf(t, "</tr>\n");
        /* the first row of each group goes into overview.png */
        int keep = k == 0 && st->overview_count + 3 <= 6;
        for (int p = 0; p < 3; p++) {
            if (keep) st->overview[st->overview_count++] = panels[p];
            else rgb_free(&panels[p]);
        }
    }
    if (!rc && shown == 0) text_printf(t, "<tr><td colspan=\"4\">no such case</td></tr>\n");
    text_printf(t, "</table>\n");
    free(usable);
    return rc;
}

static void legend(report_state *st) {
    text *t = &st->html;
    text_printf(t, "<ul class=\"legend\">\n");
    for (int c = 1; c < st->ds.num_classes; c++) {
        char hex[8];
        color_hex(c, hex);
        text_printf(t, "<li><span class=\"swatch\" style=\"background:%s\"></span>", hex);
        text_escaped(t, st->ds.class_names[c]);
        text_printf(t, "</li>\n");
    }
    text_printf(t, "</ul>\n");
}

/* One <td> holding "mean ± std" of a metric, tagged for machine reading. */
static void metric_cell(text *t, const cJSON *eval, const char *cls, const char *metric,
                        const char *key, const char *fmt) {
    char mean[32], std[32];
    format_number(mean, sizeof mean, eval_stat(eval, cls, metric, "mean"), fmt);
    format_number(std, sizeof std, eval_stat(eval, cls, metric, "std"), fmt);
    text_printf(t, "<td data-metric=\"%s\">%s", key, mean);
    if (strcmp(mean, "n/a") != 0) text_printf(t, " &plusmn; %s", std);
    text_printf(t, "</td>");
}

static void dice_table(report_state *st) {
    text *t = &st->html;
    text_printf(t,
                "<h2>Dice per class</h2>\n<p>Mean &plusmn; standard deviation over cases, from "
                "the JSON reports of <code>reflabel evaluate</code> (pseudo-labels: %d unlabeled "
                "training slices against their hidden expert labels; test: %d test slices). A "
                "class absent from both masks of a slice counts as Dice 1 there, as in MONAI "
                "(docs/METRICS.md), which lifts the means of classes that few slices show. "
                "HD95 in mm, over the slices where it is defined.</p>\n",
                eval_cases(st->pseudo_eval), eval_cases(st->test_eval));
    text_printf(t, "<table class=\"dice\" id=\"dice\">\n<tr><th>class</th><th>pseudo-labels "
                   "Dice</th><th>pseudo-labels HD95</th><th>test Dice</th><th>test "
                   "HD95</th></tr>\n");
    for (int c = 0; c <= st->ds.num_classes; c++) {
        int is_mean = c == st->ds.num_classes;
        const char *cls = is_mean ? NULL : st->ds.class_names[c];
        text_printf(t, "<tr data-class=\"");
        text_escaped(t, is_mean ? "foreground_mean" : cls);
        text_printf(t, "\"%s><td>", is_mean ? " class=\"mean\"" : "");
        if (c > 0 && !is_mean) {
            char hex[8];
            color_hex(c, hex);
            text_printf(t, "<span class=\"swatch\" style=\"background:%s\"></span>", hex);
        }
        text_escaped(t, is_mean ? "foreground mean" : cls);
        text_printf(t, "</td>");
        metric_cell(t, st->pseudo_eval, cls, "dice", "pseudo_dice", "%.4f");
        metric_cell(t, st->pseudo_eval, cls, "hd95_mm", "pseudo_hd95", "%.2f");
        metric_cell(t, st->test_eval, cls, "dice", "test_dice", "%.4f");
        metric_cell(t, st->test_eval, cls, "hd95_mm", "test_hd95", "%.2f");
        text_printf(t, "</tr>\n");
    }
    text_printf(t, "</table>\n");
}

static const char *style =
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "h1{margin-bottom:0.2em}pre{background:#f4f4f4;padding:0.8em;overflow-x:auto;"
    "white-space:pre-wrap}table{border-collapse:collapse;margin:0.5em 0}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
    "table.dice td{text-align:right}table.dice td:first-child{text-align:left}"
    "tr.mean{font-weight:bold}.swatch{display:inline-block;width:0.9em;height:0.9em;"
    "margin-right:0.4em;border:1px solid #666;vertical-align:middle}"
    "ul.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:0.3em 1.2em}"
    ".headline{font-size:1.15em}img{display:block}\n";

static void header(report_state *st, const report_headline *h) {
    text *t = &st->html;
    text_printf(t, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                   "<title>reflabel demo report</title>\n<style>%s</style>\n</head>\n<body>\n",
                style);
    text_printf(t, "<h1>reflabel demo</h1>\n<p>Reference-guided pseudo-labels (Seibold et al., "
                   "AAAI 2022): a U-Net is trained with the expert labels of only %d of the %d "
                   "training slices; every pixel of the other slices takes the label of its most "
                   "similar labeled pixel in the network's feature space.</p>\n",
                h->labeled_cases, st->ds.num_train);
    char pd[32], td[32];
    format_number(pd, sizeof pd, h->pseudo_dice, "%.4f");
    format_number(td, sizeof td, h->test_dice, "%.4f");
    text_printf(t,
                "<table class=\"headline\">\n<tr><td>pseudo-labels of %d unlabeled training "
                "slices</td><td>mean foreground Dice <b id=\"pseudo-dice\">%s</b></td></tr>\n"
                "<tr><td>predictions of %d test slices</td><td>mean foreground Dice <b "
                "id=\"test-dice\">%s</b></td></tr>\n</table>\n",
                h->pseudo_cases, pd, h->test_cases, td);
}

static void commands_section(report_state *st) {
    const report_input *in = st->in;
    text *t = &st->html;
    text_printf(t, "<h2>What was run</h2>\n<pre>");
    for (int i = 0; i < in->num_commands; i++) {
        text_escaped(t, in->commands[i]);
        text_printf(t, "\n");
    }
    text_printf(t, "</pre>\n<p>Training preset <code>");
    text_escaped(t, in->preset_name);
    text_printf(t, "</code>; the commands took %.1f minutes.</p>\n", in->seconds / 60.0);
}

static void split_section(report_state *st, const report_headline *h) {
    text *t = &st->html;
    text_printf(t, "<h2>Dataset and split</h2>\n<p>Dataset <code>");
    text_escaped(t, st->ds.root);
    text_printf(t,
                "</code>: %d training slices, of which %d keep their expert label (evenly "
                "spaced: <code>",
                st->ds.num_train, h->labeled_cases);
    const char *p = st->labeled;
    for (int i = 0; p && *p; i++) {
        size_t len = strcspn(p, "\n");
        char id[RL_CASE_ID_MAX];
        snprintf(id, sizeof id, "%.*s", (int)(len < sizeof id ? len : sizeof id - 1), p);
        if (i) text_printf(t, ", ");
        text_escaped(t, id);
        p += len + (p[len] == '\n');
    }
    text_printf(t, "</code>) and %d are pseudo-labeled; %d test slices. Classes:</p>\n",
                h->pseudo_cases, st->ds.num_test);
    legend(st);
}

/* Non-empty lines of s. */
static int count_lines(const char *s) {
    int n = 0;
    for (const char *p = s; *p; p++) n += *p != '\n' && (p[1] == '\n' || p[1] == '\0');
    return n;
}

static int load_inputs(report_state *st, rl_error *err) {
    const report_input *in = st->in;
    char path[4096];
    int rc = rl_dataset_open(in->data_dir, &st->ds, err);
    if (rc) return rc;
    st->have_ds = 1;
    if ((rc = json_read(in->pseudo_eval_json, &st->pseudo_eval, err))) return rc;
    if ((rc = json_read(in->test_eval_json, &st->test_eval, err))) return rc;
    if ((rc = cli_make_path(path, sizeof path, err, "%s/log.csv", in->run_dir))) return rc;
    if ((rc = csv_read(path, &st->log, err))) return rc;
    if ((rc = cli_make_path(path, sizeof path, err, "%s/labeled.txt", in->run_dir))) return rc;
    size_t size;
    if ((rc = rl_read_file(path, REPORT_MAX_INPUT_BYTES, &st->labeled, &size, err))) return rc;
    st->num_labeled = count_lines(st->labeled);
    return RL_OK;
}

static int write_report(report_state *st, report_headline *h, rl_error *err) {
    const report_input *in = st->in;
    char path[4096];
    int rc = cli_make_path(path, sizeof path, err, "%s/png", in->report_dir);
    if (!rc) rc = rl_make_dirs(path, err);
    if (rc) return rc;
    h->pseudo_dice = eval_stat(st->pseudo_eval, NULL, "dice", "mean");
    h->test_dice = eval_stat(st->test_eval, NULL, "dice", "mean");
    h->pseudo_cases = eval_cases(st->pseudo_eval);
    h->test_cases = eval_cases(st->test_eval);
    h->labeled_cases = st->num_labeled;
    /* the overlays first: the page shows overview.png only if it exists */
    text overlays = {0};
    char test_pred[4096];
    rc = cli_make_path(test_pred, sizeof test_pred, err, "%s/test_predictions", in->run_dir);
    if (!rc)
        rc = overlay_section(st, &overlays, "Pseudo-labeled training slices",
                             "Slices whose expert label training never saw: the image, the "
                             "hidden expert label and the reference-guided pseudo-label.",
                             st->ds.train, st->ds.num_train, in->pseudo_dir, "pseudo",
                             "pseudolabel", "pseudo-label", st->pseudo_eval, err);
    if (!rc)
        rc = overlay_section(st, &overlays, "Test slices",
                             "Held-out slices: the image, the expert label and the trained "
                             "network's prediction.",
                             st->ds.test, st->ds.num_test, test_pred, "test", "prediction",
                             "prediction", st->test_eval, err);
    if (!rc) rc = report_curves(&st->log, &st->ds, in->run_dir, in->report_dir, err);
    if (!rc && st->overview_count > 0) {
        rgb_image montage = {0};
        rc = make_montage(st->overview, st->overview_count, 3, 6, &montage, err);
        if (!rc) rc = cli_make_path(path, sizeof path, err, "%s/overview.png", in->report_dir);
        if (!rc) rc = write_png_rgb(path, &montage, err);
        rgb_free(&montage);
    }
    if (rc) {
        free(overlays.s);
        return rc;
    }
    text *t = &st->html;
    header(st, h);
    if (st->overview_count > 0)
        text_printf(t, "<p><img src=\"overview.png\" alt=\"overlays of the first pseudo-labeled "
                       "and test slice\"></p>\n");
    commands_section(st);
    split_section(st, h);
    if (overlays.out_of_memory) t->out_of_memory = 1;
    else text_printf(t, "%s", overlays.s ? overlays.s : "");
    free(overlays.s);
    text_printf(t, "<h2>Training curves</h2>\n<p>From <code>log.csv</code> of the run, one value "
                   "per step. The pseudo-label loss enters the total weighted by lambda, which "
                   "stays 0 during the supervised warm-up.</p>\n"
                   "<p><img src=\"loss.svg\" alt=\"losses per step\"></p>\n"
                   "<p><img src=\"pseudolabels.svg\" alt=\"pseudo-label quality per step\"></p>\n");
    dice_table(st);
    text_printf(t, "<p>No supervised baseline was trained in this run.</p>\n</body>\n</html>\n");
    /* report.html last: once it exists, everything it links to does */
    if (!rc) rc = cli_make_path(path, sizeof path, err, "%s/report.html", in->report_dir);
    if (!rc) rc = text_write(t, path, err);
    return rc;
}

int report_write(const report_input *in, report_headline *headline, rl_error *err) {
    report_state st;
    memset(&st, 0, sizeof st);
    st.in = in;
    report_headline local;
    report_headline *h = headline ? headline : &local;
    int rc = load_inputs(&st, err);
    if (!rc) rc = write_report(&st, h, err);
    for (int i = 0; i < st.overview_count; i++) rgb_free(&st.overview[i]);
    free(st.html.s);
    free(st.labeled);
    csv_free(&st.log);
    cJSON_Delete(st.pseudo_eval);
    cJSON_Delete(st.test_eval);
    if (st.have_ds) rl_dataset_free(&st.ds);
    return rc;
}
