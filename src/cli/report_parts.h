/* The pieces that the files of the demo report share (report.h is the
 * report's interface; this header is only for report*.c): the growing text
 * that report.html and the SVG charts are written into (report_text.c), and
 * RUN_DIR/log.csv with the charts drawn from it (report_curves.c). */
#ifndef RL_CLI_REPORT_PARTS_H
#define RL_CLI_REPORT_PARTS_H

#include <stddef.h>

#include "reflabel/core.h"
#include "reflabel/dataset.h"

/* Largest log.csv / JSON file read (a 100k-step log is about 30 MB). */
#define REPORT_MAX_INPUT_BYTES (256u << 20)

/* ---- growing text with HTML/XML escaping (report_text.c) ------------------- */

typedef struct text {
    char *s;
    size_t len, cap;
    int out_of_memory; /* sticky: checked once when the text is written */
} text;

void text_printf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s with the five characters that are special in HTML and XML
 * (text and attribute values alike) replaced by entities. */
void text_escaped(text *t, const char *s);
/* Writes the text atomically; an earlier allocation failure is reported here. */
int text_write(text *t, const char *path, rl_error *err);

/* ---- log.csv and the training curves (report_curves.c) ---------------------- */

/* A numeric CSV with a header line; values[col * rows + row] (column-major,
 * so that a column is one array). "nan" cells are NaN. */
typedef struct csv_table {
    int rows, cols;
    char **names;
    double *values;
} csv_table;

int csv_read(const char *path, csv_table *t, rl_error *err);
void csv_free(csv_table *t);

/* REPORT_DIR/loss.svg and REPORT_DIR/pseudolabels.svg from the log.csv of
 * RUN_DIR (read into log), whose pl_dice_<class> columns are named after
 * the classes of ds. */
int report_curves(const csv_table *log, const rl_dataset *ds, const char *run_dir,
                  const char *report_dir, rl_error *err);

#endif
