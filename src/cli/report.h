/* The report of `reflabel demo`: one self-contained folder that opens in any
 * browser without network or JavaScript.
 *
 *   REPORT_DIR/report.html        what was run, the split, overlays, curves, Dice table
 *   REPORT_DIR/png/               overlay panels: RGB PNG files written by reflabel
 *   REPORT_DIR/overview.png       a montage of the first panels (README picture)
 *   REPORT_DIR/loss.svg           losses against the step (from RUN_DIR/log.csv)
 *   REPORT_DIR/pseudolabels.svg   pseudo-label accuracy, Dice and lambda against the step
 *
 * Every link in report.html is relative and points at one of these files.
 * Every file is written atomically (core.h). */
#ifndef RL_CLI_REPORT_H
#define RL_CLI_REPORT_H

#include <stdint.h>

#include "reflabel/core.h"

/* Overlays: class c > 0 is painted over the gray image as
 * (gray * (256 - REPORT_OVERLAY_WEIGHT) + colour * REPORT_OVERLAY_WEIGHT + 128) >> 8
 * per channel; class 0 (background) leaves the gray image as it is. Panels
 * are the slice enlarged REPORT_PANEL_SCALE times (nearest neighbour) with
 * the rows in reverse order (see report.c). */
#define REPORT_OVERLAY_WEIGHT 144
#define REPORT_PANEL_SCALE 3

/* The fixed colour of class c >= 1 (a 12-colour palette, repeated for more
 * classes). */
void report_class_color(int c, uint8_t rgb[3]);

/* What the demo ran and where it put the results. */
typedef struct report_input {
    const char *report_dir;      /* created if missing */
    const char *data_dir;        /* the nnU-Net dataset (dataset.json, imagesTr, labelsTr, ...) */
    const char *run_dir;         /* `reflabel train --out`: log.csv, labeled.txt,
                                    test_predictions/ */
    const char *pseudo_dir;      /* `reflabel pseudolabel --out`: CASE<ending> pseudo-labels */
    const char *pseudo_eval_json; /* `reflabel evaluate` of the pseudo-labels vs expert labels */
    const char *test_eval_json;  /* `reflabel evaluate` of the test predictions */
    const char *const *commands; /* the command lines, shown verbatim */
    int num_commands;
    const char *preset_name;     /* the training preset, named in the report */
    int overlay_cases;           /* slices shown per group (test, pseudo-labelled) */
    double seconds;              /* wall time of the commands */
} report_input;

/* The numbers the demo prints at the end. */
typedef struct report_headline {
    double pseudo_dice; /* mean foreground Dice of the pseudo-labels (NaN if absent) */
    double test_dice;   /* the same for the test predictions */
    int pseudo_cases, test_cases, labeled_cases;
} report_headline;

/* Writes the whole report folder; headline may be NULL. */
int report_write(const report_input *in, report_headline *headline, rl_error *err);

#endif
