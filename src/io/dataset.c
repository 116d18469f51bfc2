/* nnU-Net v2 raw datasets: dataset.json, the imagesTr/labelsTr/imagesTs
 * folders and loading a case with its consistency checks. The choice of
 * labeled cases (--labeled) is in dataset_labeled.c. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "reflabel/dataset.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "paths.h"

static char *copy_string(const char *s) {
    size_t len = strlen(s) + 1;
    char *copy = malloc(len);
    if (copy) memcpy(copy, s, len);
    return copy;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Parses a whole string as a non-negative decimal int; -1 if it is not one. */
static int parse_index(const char *s) {
    if (!*s) return -1;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
        if (v > INT_MAX) return -1;
    }
    return (int)v;
}

/* ---- dataset.json -------------------------------------------------------- */

static int parse_channels(const char *path, const cJSON *channels, rl_dataset *ds,
                          rl_error *err) {
    if (!cJSON_IsObject(channels))
        return rl_error_set(err, RL_EFORMAT, "%s: \"channel_names\" missing or not an object",
                            path);
    int count = cJSON_GetArraySize(channels);
    if (count < 1 || count > RL_DATASET_MAX_CHANNELS)
        return rl_error_set(err, RL_EFORMAT, "%s: \"channel_names\" has %d entries (1..%d)",
                            path, count, RL_DATASET_MAX_CHANNELS);
    ds->channel_names = calloc((size_t)count, sizeof *ds->channel_names);
    if (!ds->channel_names) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    ds->num_channels = count;
    const cJSON *item;
    cJSON_ArrayForEach(item, channels) {
        int index = parse_index(item->string);
        if (index < 0 || index >= count)
            return rl_error_set(err, RL_EFORMAT,
                                "%s: channel key \"%s\" is not one of \"0\"..\"%d\"", path,
                                item->string, count - 1);
        if (ds->channel_names[index])
            return rl_error_set(err, RL_EFORMAT, "%s: channel %d declared twice", path, index);
        if (!cJSON_IsString(item))
            return rl_error_set(err, RL_EFORMAT, "%s: channel %d name is not a string", path,
                                index);
        ds->channel_names[index] = copy_string(item->valuestring);
        if (!ds->channel_names[index])
            return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    }
    return RL_OK;
}

/* labels: {"background": 0, "liver": 1, ..., "ignore": K}. */
static int parse_labels(const char *path, const cJSON *labels, rl_dataset *ds, rl_error *err) {
    if (!cJSON_IsObject(labels))
        return rl_error_set(err, RL_EFORMAT, "%s: \"labels\" missing or not an object", path);
    int count = cJSON_GetArraySize(labels);
    if (count < 1 || count > RL_DATASET_MAX_LABELS)
        return rl_error_set(err, RL_EFORMAT, "%s: \"labels\" has %d entries (1..%d)", path,
                            count, RL_DATASET_MAX_LABELS);
    const cJSON *ignore = cJSON_GetObjectItemCaseSensitive(labels, "ignore");
    int num_classes = ignore ? count - 1 : count;
    if (num_classes < 1)
        return rl_error_set(err, RL_EFORMAT, "%s: \"labels\" declares no class", path);
    ds->class_names = calloc((size_t)num_classes, sizeof *ds->class_names);
    if (!ds->class_names) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    ds->num_classes = num_classes;
    ds->ignore_label = -1;
    const cJSON *item;
    cJSON_ArrayForEach(item, labels) {
        if (cJSON_IsArray(item))
            return rl_error_set(err, RL_EUNSUPPORTED,
                                "%s: label \"%s\" is a region (list of values): region-based "
                                "labels are not supported",
                                path, item->string);
        double v = cJSON_IsNumber(item) ? item->valuedouble : -1;
        if (!cJSON_IsNumber(item) || v != floor(v) || v < 0 || v > RL_DATASET_MAX_LABELS)
            return rl_error_set(err, RL_EFORMAT,
                                "%s: label \"%s\" must have a non-negative integer value", path,
                                item->string);
        int value = (int)v;
        if (item == ignore) {
            if (value != num_classes)
                return rl_error_set(err, RL_EFORMAT,
                                    "%s: the \"ignore\" label is %d but must be the highest "
                                    "value, %d",
                                    path, value, num_classes);
            ds->ignore_label = value;
            continue;
        }
        if (value >= num_classes)
            return rl_error_set(err, RL_EFORMAT,
                                "%s: label \"%s\" = %d: values must be 0..%d without gaps", path,
                                item->string, value, num_classes - 1);
        if (ds->class_names[value])
            return rl_error_set(err, RL_EFORMAT, "%s: labels \"%s\" and \"%s\" share value %d",
                                path, ds->class_names[value], item->string, value);
        if (strcmp(item->string, "background") == 0 && value != 0)
            return rl_error_set(err, RL_EFORMAT, "%s: \"background\" must be 0, not %d", path,
                                value);
        ds->class_names[value] = copy_string(item->string);
        if (!ds->class_names[value]) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    }
    /* count distinct values 0..K-1 were all filled: nothing is missing. */
    return RL_OK;
}

/* "reflabel_multilabel": true marks bit-set labels (docs/DATA.md). Every
 * structure needs its own bit of a 16-bit label file, and an "ignore" value
 * would be ambiguous with a bit set, so both are refused here. */
static int parse_multilabel(const char *path, const cJSON *flag, rl_dataset *ds, rl_error *err) {
    if (!flag) return RL_OK;
    if (!cJSON_IsBool(flag))
        return rl_error_set(err, RL_EFORMAT, "%s: \"reflabel_multilabel\" must be true or false",
                            path);
    ds->multilabel = cJSON_IsTrue(flag);
    if (!ds->multilabel) return RL_OK;
    if (ds->ignore_label >= 0)
        return rl_error_set(err, RL_EUNSUPPORTED,
                            "%s: an \"ignore\" label cannot be combined with "
                            "\"reflabel_multilabel\"",
                            path);
    if (ds->num_classes < 2 || ds->num_classes - 1 > RL_MULTILABEL_MAX_STRUCTURES)
        return rl_error_set(err, RL_ERANGE,
                            "%s: a multi-label dataset needs 1..%d structures besides "
                            "background, \"labels\" declares %d",
                            path, RL_MULTILABEL_MAX_STRUCTURES, ds->num_classes - 1);
    return RL_OK;
}

static int parse_dataset_json(const char *path, rl_dataset *ds, rl_error *err) {
    char *text = NULL;
    size_t size = 0;
    int rc = rl_read_file(path, RL_DATASET_JSON_MAX_BYTES, &text, &size, err);
    if (rc) return rc;
    cJSON *json = cJSON_ParseWithLength(text, size);
    free(text);
    if (!json) return rl_error_set(err, RL_EFORMAT, "%s: malformed JSON", path);
    if (!cJSON_IsObject(json)) {
        cJSON_Delete(json);
        return rl_error_set(err, RL_EFORMAT, "%s: top level is not a JSON object", path);
    }
    /* nnU-Net v2 lets "dataset" list each case's files explicitly, relative
     * to the dataset folder or absolute. reflabel only scans imagesTr and
     * labelsTr, so it refuses such a file rather than silently reading other
     * files than the ones listed, and never turns a listed name into a path. */
    if (cJSON_GetObjectItemCaseSensitive(json, "dataset"))
        rc = rl_error_set(err, RL_EUNSUPPORTED,
                          "%s: \"dataset\" (explicit file lists) is not supported: cases must "
                          "be files in imagesTr/labelsTr",
                          path);
    if (!rc)
        rc = parse_channels(path, cJSON_GetObjectItemCaseSensitive(json, "channel_names"), ds,
                            err);
    if (!rc) rc = parse_labels(path, cJSON_GetObjectItemCaseSensitive(json, "labels"), ds, err);
    if (!rc) {
        const cJSON *ending = cJSON_GetObjectItemCaseSensitive(json, "file_ending");
        if (!cJSON_IsString(ending))
            rc = rl_error_set(err, RL_EFORMAT, "%s: \"file_ending\" missing or not a string",
                              path);
        else if (strcmp(ending->valuestring, ".png") && strcmp(ending->valuestring, ".nii.gz") &&
                 strcmp(ending->valuestring, ".nii"))
            rc = rl_error_set(err, RL_EUNSUPPORTED,
                              "%s: file_ending \"%s\" is not supported (.png, .nii.gz, .nii)",
                              path, ending->valuestring);
        else
            snprintf(ds->file_ending, sizeof ds->file_ending, "%s", ending->valuestring);
    }
    if (!rc)
        rc = parse_multilabel(path, cJSON_GetObjectItemCaseSensitive(json, "reflabel_multilabel"),
                              ds, err);
    if (!rc) {
        const cJSON *num = cJSON_GetObjectItemCaseSensitive(json, "numTraining");
        ds->num_training_declared = -1;
        if (num) {
            if (!cJSON_IsNumber(num) || num->valuedouble != floor(num->valuedouble) ||
                num->valuedouble < 0 || num->valuedouble > INT_MAX)
                rc = rl_error_set(err, RL_EFORMAT, "%s: \"numTraining\" is not a count", path);
            else
                ds->num_training_declared = (int)num->valuedouble;
        }
    }
    cJSON_Delete(json);
    return rc;
}

/* ---- folder scanning ------------------------------------------------------ */

/* One file of a scan. The id is allocated to its length rather than held
 * in an RL_CASE_ID_MAX array: a folder of 10,000 cases then lists in 3 MB
 * less (bench/pseudolabel_10k.sh). */
typedef struct image_entry {
    char *id;
    int channel;
    char *path;
} image_entry;

static int compare_entries(const void *a, const void *b) {
    const image_entry *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->channel > y->channel) - (x->channel < y->channel);
}

static int compare_cases(const void *a, const void *b) {
    return strcmp(((const rl_case *)a)->id, ((const rl_case *)b)->id);
}

/* A dataset file must be a regular file that resolves inside the dataset
 * folder (paths.h). real_root is the resolved dataset root. */
static int check_file(const char *path, const char *real_root, rl_error *err) {
    char resolved[PATH_MAX];
    int rc = rl_io_resolve_inside(path, real_root, "the dataset folder", resolved, err);
    if (rc) return rc;
    struct stat st;
    if (stat(resolved, &st) != 0)
        return rl_error_set(err, RL_EIO, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return rl_error_set(err, RL_EINVAL, "%s: not a regular file", path);
    return RL_OK;
}

static int check_case_id(const char *path, const char *id, rl_error *err) {
    if (!*id) return rl_error_set(err, RL_EFORMAT, "%s: empty case id", path);
    if (strstr(id, "..") || strchr(id, '/'))
        return rl_error_set(err, RL_EINVAL, "%s: case id \"%s\" contains '..' or '/'; refused",
                            path, id);
    if (strlen(id) >= RL_CASE_ID_MAX)
        return rl_error_set(err, RL_ERANGE, "%s: case id longer than %d characters", path,
                            RL_CASE_ID_MAX - 1);
    return RL_OK;
}

typedef struct entry_list {
    image_entry *items;
    int count, capacity;
} entry_list;

static void entry_list_free(entry_list *list) {
    for (int i = 0; i < list->count; i++) {
        free(list->items[i].id);
        free(list->items[i].path);
    }
    free(list->items);
    memset(list, 0, sizeof *list);
}

static int entry_list_push(entry_list *list, const char *id, int channel, char *path) {
    if (list->count == list->capacity) {
        int cap = list->capacity ? 2 * list->capacity : 64;
        image_entry *grown = realloc(list->items, sizeof *grown * (size_t)cap);
        if (!grown) return -1;
        list->items = grown;
        list->capacity = cap;
    }
    char *id_copy = copy_string(id);
    if (!id_copy) return -1;
    image_entry *e = &list->items[list->count++];
    e->id = id_copy;
    e->channel = channel;
    e->path = path;
    return 0;
}

/* Lists dir's files named <id><ending> (with_channel = 0) or
 * <id>_XXXX<ending> (with_channel = 1). Hidden files (our own temporaries
 * among them) and other endings are skipped. *missing is set when dir does
 * not exist. */
static int scan_folder(const char *dir, const char *ending, int with_channel,
                       const char *real_root, entry_list *list, int *missing, rl_error *err) {
    *missing = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) {
            *missing = 1;
            return RL_OK;
        }
        return rl_error_set(err, RL_EIO, "%s: cannot open folder: %s", dir, strerror(errno));
    }
    int rc = RL_OK;
    struct dirent *ent;
    while (!rc && (ent = readdir(d)) != NULL) {
        const char *name = ent->d_name;
        if (name[0] == '.' || !ends_with(name, ending) || strlen(name) == strlen(ending))
            continue;
        char *path = rl_io_join_path(dir, name);
        if (!path) {
            rc = rl_error_set(err, RL_ENOMEM, "%s: out of memory", dir);
            break;
        }
        char stem[RL_CASE_ID_MAX + 8];
        size_t stem_len = strlen(name) - strlen(ending);
        int channel = 0;
        if (stem_len >= sizeof stem) {
            rc = rl_error_set(err, RL_ERANGE, "%s: file name too long", path);
        } else {
            memcpy(stem, name, stem_len);
            stem[stem_len] = '\0';
            if (with_channel) {
                channel = stem_len > 5 && stem[stem_len - 5] == '_'
                              ? parse_index(stem + stem_len - 4)
                              : -1;
                if (channel < 0)
                    rc = rl_error_set(err, RL_EFORMAT,
                                      "%s: image names must be CASE_XXXX%s (XXXX = 4-digit "
                                      "channel)",
                                      path, ending);
                else
                    stem[stem_len - 5] = '\0';
            }
        }
        if (!rc) rc = check_case_id(path, stem, err);
        if (!rc) rc = check_file(path, real_root, err);
        if (!rc && entry_list_push(list, stem, channel, path) != 0)
            rc = rl_error_set(err, RL_ENOMEM, "%s: out of memory", dir);
        if (rc) free(path); /* on success the list owns it */
    }
    closedir(d);
    if (!rc && list->count > 0)
        qsort(list->items, (size_t)list->count, sizeof *list->items, compare_entries);
    return rc;
}

static void free_cases(rl_case *cases, int count, int num_channels) {
    if (!cases) return;
    for (int i = 0; i < count; i++) {
        if (cases[i].image_paths)
            for (int c = 0; c < num_channels; c++) free(cases[i].image_paths[c]);
        free(cases[i].image_paths);
        free(cases[i].label_path);
    }
    free(cases);
}

/* Groups sorted image entries into cases; every case needs every channel.
 * Takes ownership of the entries' paths. */
static int group_cases(const char *dir, entry_list *list, int num_channels, const char *ending,
                       rl_case **cases_out, int *count_out, rl_error *err) {
    rl_case *cases = calloc((size_t)list->count + 1, sizeof *cases);
    if (!cases) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", dir);
    int count = 0, rc = RL_OK;
    for (int i = 0; i < list->count && !rc;) {
        int j = i;
        while (j < list->count && strcmp(list->items[j].id, list->items[i].id) == 0) j++;
        rl_case *c = &cases[count++];
        snprintf(c->id, sizeof c->id, "%s", list->items[i].id);
        c->image_paths = calloc((size_t)num_channels, sizeof *c->image_paths);
        if (!c->image_paths) {
            rc = rl_error_set(err, RL_ENOMEM, "%s: out of memory", dir);
            break;
        }
        for (int k = i; k < j; k++) {
            image_entry *e = &list->items[k];
            if (e->channel >= num_channels) {
                rc = rl_error_set(err, RL_EFORMAT,
                                  "%s: channel %04d but dataset.json declares %d channel%s",
                                  e->path, e->channel, num_channels,
                                  num_channels == 1 ? "" : "s");
                break;
            }
            c->image_paths[e->channel] = e->path;
            e->path = NULL;
        }
        for (int ch = 0; ch < num_channels && !rc; ch++)
            if (!c->image_paths[ch])
                rc = rl_error_set(err, RL_EFORMAT, "%s: case \"%s\" lacks channel %04d (%s_%04d%s)",
                                  dir, c->id, ch, c->id, ch, ending);
        i = j;
    }
    if (rc) {
        free_cases(cases, count, num_channels);
        return rc;
    }
    *cases_out = cases;
    *count_out = count;
    return RL_OK;
}

/* Attaches labels/<id><ending> to each case; a label without images is an
 * error (most likely a misnamed file). */
static int attach_labels(const char *dir, const char *ending, const char *real_root,
                         rl_case *cases, int count, int *labeled, rl_error *err) {
    entry_list list = {0};
    int missing = 0;
    *labeled = 0;
    int rc = scan_folder(dir, ending, 0, real_root, &list, &missing, err);
    for (int i = 0; i < list.count && !rc; i++) {
        rl_case key;
        snprintf(key.id, sizeof key.id, "%s", list.items[i].id);
        rl_case *c = bsearch(&key, cases, (size_t)count, sizeof *cases, compare_cases);
        if (!c) {
            rc = rl_error_set(err, RL_EFORMAT, "%s: label of case \"%s\" which has no images",
                              list.items[i].path, list.items[i].id);
            break;
        }
        c->label_path = list.items[i].path;
        list.items[i].path = NULL;
        (*labeled)++;
    }
    entry_list_free(&list);
    return rc;
}

static int scan_split(const rl_dataset *ds, const char *real_root, const char *images_name,
                      const char *labels_name, int required, rl_case **cases, int *count,
                      int *labeled, rl_error *err) {
    char *images_dir = rl_io_join_path(ds->root, images_name);
    char *labels_dir = rl_io_join_path(ds->root, labels_name);
    entry_list list = {0};
    int missing = 0, rc = RL_OK;
    if (!images_dir || !labels_dir) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    if (!rc) rc = scan_folder(images_dir, ds->file_ending, 1, real_root, &list, &missing, err);
    if (!rc && missing && required)
        rc = rl_error_set(err, RL_EIO, "%s: folder missing", images_dir);
    if (!rc) rc = group_cases(images_dir, &list, ds->num_channels, ds->file_ending, cases, count,
                              err);
    /* The cases own the paths now; the list goes before the labels are
     * scanned, so that a folder of many cases does not hold both lists at
     * once (about 4 MB at 10,000 cases). */
    entry_list_free(&list);
    if (!rc) {
        rc = attach_labels(labels_dir, ds->file_ending, real_root, *cases, *count, labeled, err);
        if (rc) {
            free_cases(*cases, *count, ds->num_channels);
            *cases = NULL;
            *count = 0;
        }
    }
    free(images_dir);
    free(labels_dir);
    return rc;
}

int rl_dataset_open(const char *dir, rl_dataset *ds, rl_error *err) {
    memset(ds, 0, sizeof *ds);
    ds->ignore_label = -1;
    ds->num_training_declared = -1;
    char real_root[PATH_MAX];
    if (!realpath(dir, real_root))
        return rl_error_set(err, RL_EIO, "%s: dataset folder not found: %s", dir,
                            strerror(errno));
    ds->root = copy_string(dir);
    char *json_path = rl_io_join_path(dir, "dataset.json");
    if (!ds->root || !json_path) {
        free(json_path);
        rl_dataset_free(ds);
        return rl_error_set(err, RL_ENOMEM, "out of memory");
    }
    int rc = parse_dataset_json(json_path, ds, err);
    int labeled_test = 0;
    if (!rc)
        rc = scan_split(ds, real_root, "imagesTr", "labelsTr", 1, &ds->train, &ds->num_train,
                        &ds->num_train_labeled, err);
    if (!rc && ds->num_train == 0)
        rc = rl_error_set(err, RL_EFORMAT, "%s/imagesTr: no training cases named CASE_XXXX%s",
                          dir, ds->file_ending);
    if (!rc && ds->num_training_declared >= 0 && ds->num_training_declared != ds->num_train)
        rc = rl_error_set(err, RL_EFORMAT,
                          "%s: numTraining is %d but imagesTr holds %d case%s", json_path,
                          ds->num_training_declared, ds->num_train,
                          ds->num_train == 1 ? "" : "s");
    if (!rc)
        rc = scan_split(ds, real_root, "imagesTs", "labelsTs", 0, &ds->test, &ds->num_test,
                        &labeled_test, err);
    free(json_path);
    if (rc) rl_dataset_free(ds);
    return rc;
}

void rl_dataset_free(rl_dataset *ds) {
    if (!ds) return;
    free_cases(ds->train, ds->num_train, ds->num_channels);
    free_cases(ds->test, ds->num_test, ds->num_channels);
    if (ds->channel_names)
        for (int c = 0; c < ds->num_channels; c++) free(ds->channel_names[c]);
    free(ds->channel_names);
    if (ds->class_names)
        for (int k = 0; k < ds->num_classes; k++) free(ds->class_names[k]);
    free(ds->class_names);
    free(ds->root);
    memset(ds, 0, sizeof *ds);
    ds->ignore_label = -1;
}

/* ---- loading a case ------------------------------------------------------ */

static int same_shape(const rl_volume *a, const rl_volume *b) {
    return a->nx == b->nx && a->ny == b->ny && a->nz == b->nz;
}

static int shape_mismatch(const char *path_a, const rl_volume *a, const char *path_b,
                          const rl_volume *b, rl_error *err) {
    return rl_error_set(err, RL_EFORMAT, "shape mismatch: %s is %dx%dx%d but %s is %dx%dx%d",
                        path_a, a->nx, a->ny, a->nz, path_b, b->nx, b->ny, b->nz);
}

/* Multi-label: every value is a bit set of the declared structures. The
 * message names the first offending bit, which is what a user has to fix
 * (a structure missing from dataset.json, or a file of another encoding). */
static int check_bitset_values(const rl_dataset *ds, const char *path, const rl_volume *label,
                               rl_error *err) {
    int structures = ds->num_classes - 1;
    double limit = (double)(1u << structures);
    size_t n = rl_volume_numel(label);
    for (size_t i = 0; i < n; i++) {
        float v = label->data[i];
        if (v >= 0 && v == floorf(v) && (double)v < limit) continue;
        if (!(v >= 0) || v != floorf(v) || v >= 2147483648.0f)
            return rl_error_set(err, RL_EFORMAT,
                                "%s: label value %g is not a bit set of structures (multi-label "
                                "dataset)",
                                path, (double)v);
        int bit = structures;
        while (!(((uint32_t)v >> bit) & 1u)) bit++;
        return rl_error_set(err, RL_EFORMAT,
                            "%s: label value %g sets bit %d (structure %d) but dataset.json "
                            "declares %d structure%s (multi-label dataset)",
                            path, (double)v, bit, bit + 1, structures, structures == 1 ? "" : "s");
    }
    return RL_OK;
}

static int check_label_values(const rl_dataset *ds, const char *path, const rl_volume *label,
                              rl_error *err) {
    if (ds->multilabel) return check_bitset_values(ds, path, label, err);
    size_t n = rl_volume_numel(label);
    for (size_t i = 0; i < n; i++) {
        float v = label->data[i];
        int declared = v >= 0 && v == floorf(v) &&
                       (v < (float)ds->num_classes || (int)v == ds->ignore_label);
        if (!declared)
            return rl_error_set(err, RL_EFORMAT,
                                "%s: label value %g is not declared in dataset.json (0..%d%s)",
                                path, (double)v, ds->num_classes - 1,
                                ds->ignore_label >= 0 ? " and ignore" : "");
    }
    return RL_OK;
}

void rl_dataset_free_case(const rl_dataset *ds, rl_volume *images, rl_volume *label) {
    if (images)
        for (int c = 0; c < ds->num_channels; c++) rl_volume_free(&images[c]);
    if (label) rl_volume_free(label);
}

int rl_dataset_load_case(const rl_dataset *ds, const rl_case *c, rl_volume *images,
                         rl_volume *label, rl_error *err) {
    for (int ch = 0; ch < ds->num_channels; ch++) memset(&images[ch], 0, sizeof images[ch]);
    if (label) memset(label, 0, sizeof *label);
    int rc = RL_OK;
    for (int ch = 0; ch < ds->num_channels && !rc; ch++) {
        rc = rl_volume_read(c->image_paths[ch], &images[ch], err);
        if (!rc && ch > 0 && !same_shape(&images[0], &images[ch]))
            rc = shape_mismatch(c->image_paths[0], &images[0], c->image_paths[ch], &images[ch],
                                err);
    }
    if (!rc && label && c->label_path) {
        rc = rl_volume_read_labels(c->label_path, label, err);
        if (!rc && !same_shape(&images[0], label))
            rc = shape_mismatch(c->image_paths[0], &images[0], c->label_path, label, err);
        if (!rc) rc = check_label_values(ds, c->label_path, label, err);
    }
    if (rc) rl_dataset_free_case(ds, images, label);
    return rc;
}

/* ---- writing dataset.json ------------------------------------------------ */

static int json_write(const char *path, int num_channels, const char *const *channel_names,
                      int num_labels, const char *const *label_names, const int *label_values,
                      const char *file_ending, int num_training, int multilabel, rl_error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON *channels = cJSON_AddObjectToObject(root, "channel_names");
    cJSON *labels = cJSON_AddObjectToObject(root, "labels");
    int ok = root && channels && labels;
    for (int c = 0; ok && c < num_channels; c++) {
        char key[16];
        snprintf(key, sizeof key, "%d", c);
        ok = cJSON_AddStringToObject(channels, key, channel_names[c]) != NULL;
    }
    for (int k = 0; ok && k < num_labels; k++)
        ok = cJSON_AddNumberToObject(labels, label_names[k], label_values[k]) != NULL;
    if (ok && num_training >= 0)
        ok = cJSON_AddNumberToObject(root, "numTraining", num_training) != NULL;
    if (ok) ok = cJSON_AddStringToObject(root, "file_ending", file_ending) != NULL;
    if (ok && multilabel) ok = cJSON_AddTrueToObject(root, "reflabel_multilabel") != NULL;
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    size_t len = strlen(text);
    char *with_newline = malloc(len + 2);
    int rc;
    if (!with_newline) {
        rc = rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    } else {
        memcpy(with_newline, text, len);
        with_newline[len] = '\n';
        rc = rl_write_file_atomic(path, with_newline, len + 1, err);
    }
    free(with_newline);
    cJSON_free(text);
    return rc;
}

int rl_dataset_json_write(const char *path, int num_channels, const char *const *channel_names,
                          int num_labels, const char *const *label_names,
                          const int *label_values, const char *file_ending, int num_training,
                          rl_error *err) {
    return json_write(path, num_channels, channel_names, num_labels, label_names, label_values,
                      file_ending, num_training, 0, err);
}

int rl_dataset_json_write_multilabel(const char *path, int num_channels,
                                     const char *const *channel_names, int num_labels,
                                     const char *const *label_names, const char *file_ending,
                                     int num_training, rl_error *err) {
    int values[RL_MULTILABEL_MAX_STRUCTURES + 1];
    if (num_labels < 2 || num_labels > RL_MULTILABEL_MAX_STRUCTURES + 1)
        return rl_error_set(err, RL_EINVAL, "%s: a multi-label dataset has 1..%d structures", path,
                            RL_MULTILABEL_MAX_STRUCTURES);
    for (int c = 0; c < num_labels; c++) values[c] = c;
    return json_write(path, num_channels, channel_names, num_labels, label_names, values,
                      file_ending, num_training, 1, err);
}
