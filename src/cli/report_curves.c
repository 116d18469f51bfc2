/* The training curves of the demo report (report_parts.h): RUN_DIR/log.csv
 * read into columns, and SVG line charts of them, loss.svg and
 * pseudolabels.svg, drawn without any plotting library. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "report_parts.h"

/* ---- log.csv ------------------------------------------------------------------- */

void csv_free(csv_table *t) {
    for (int c = 0; t->names && c < t->cols; c++) free(t->names[c]);
    free(t->names);
    free(t->values);
    memset(t, 0, sizeof *t);
}

static int csv_parse(const char *path, char *data, csv_table *t, rl_error *err) {
    char *line_end = strchr(data, '\n');
    if (!line_end) return rl_error_set(err, RL_EFORMAT, "%s: no header line", path);
    *line_end = '\0';
    t->cols = 1;
    for (const char *p = data; *p; p++) t->cols += *p == ',';
    for (const char *p = line_end + 1; *p; p++) t->rows += *p == '\n';
    t->names = calloc((size_t)t->cols, sizeof *t->names);
    t->values = malloc((size_t)t->cols * ((size_t)t->rows + 1) * sizeof *t->values);
    if (!t->names || !t->values) return rl_error_set(err, RL_ENOMEM, "out of memory");
    char *name = data;
    for (int c = 0; c < t->cols; c++) {
        char *comma = strchr(name, ',');
        if (comma) *comma = '\0';
        if (!(t->names[c] = strdup(name))) return rl_error_set(err, RL_ENOMEM, "out of memory");
        name = comma ? comma + 1 : name + strlen(name);
    }
    char *p = line_end + 1;
    for (int r = 0; r < t->rows; r++) {
        for (int c = 0; c < t->cols; c++) {
            char *end;
            double v = strtod(p, &end);
            char want = c + 1 < t->cols ? ',' : '\n';
            if (end == p || *end != want)
                return rl_error_set(err, RL_EFORMAT, "%s: line %d: column %d (%s) is not a number",
                                    path, r + 2, c + 1, t->names[c]);
            t->values[(size_t)c * t->rows + r] = v;
            p = end + 1;
        }
    }
    return RL_OK;
}

int csv_read(const char *path, csv_table *t, rl_error *err) {
    memset(t, 0, sizeof *t);
    char *data = NULL;
    size_t size = 0;
    int rc = rl_read_file(path, REPORT_MAX_INPUT_BYTES, &data, &size, err);
    if (!rc) rc = csv_parse(path, data, t, err);
    free(data);
    if (rc) csv_free(t);
    return rc;
}

/* The column called name, or NULL. */
static const double *csv_column(const csv_table *t, const char *name) {
    for (int c = 0; c < t->cols; c++)
        if (!strcmp(t->names[c], name)) return t->values + (size_t)c * t->rows;
    return NULL;
}

/* ---- SVG line charts -------------------------------------------------------------- */

typedef struct chart_series {
    const char *name;
    const double *y; /* n values; non-finite ones leave a gap */
    const char *color;
} chart_series;

typedef struct chart {
    const char *title, *x_label;
    const double *x; /* n increasing values */
    int n;
    int x_is_count;  /* x counts things (steps): no ticks between whole numbers */
    const chart_series *series;
    int num_series;
    double y_min, y_max; /* fixed range, or NaN: from the data */
} chart;

/* A step of 1, 2 or 5 times a power of ten that cuts span into about
 * `target` intervals: tick values that people read at a glance. */
static double nice_step(double span, int target) {
    double raw = span / target, magnitude = pow(10.0, floor(log10(raw))), r = raw / magnitude;
    return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * magnitude;
}

/* Widens [*lo, *hi] to multiples of a nice step; returns the step. */
static double nice_range(double *lo, double *hi) {
    if (!(*hi > *lo)) {
        double pad = *lo != 0 ? fabs(*lo) * 0.5 : 1.0;
        *lo -= pad;
        *hi += pad;
    }
    double step = nice_step(*hi - *lo, 5);
    *lo = floor(*lo / step + 1e-9) * step;
    *hi = ceil(*hi / step - 1e-9) * step;
    return step;
}

/* Width, height and plot-area margins of every chart, in SVG pixels. */
enum { CH_W = 720, CH_H = 340, CH_LEFT = 64, CH_RIGHT = 16, CH_TOP = 34, CH_BOTTOM = 46 };

static void chart_ticks(text *t, const chart *c, double x0, double x1, double y0, double y1) {
    const double pw = CH_W - CH_LEFT - CH_RIGHT, ph = CH_H - CH_TOP - CH_BOTTOM;
    double xs = nice_step(x1 - x0, 6), ys = nice_step(y1 - y0, 5);
    if (c->x_is_count && xs < 1) xs = 1;
    text_printf(t, "<g font-size=\"11\" fill=\"#333\">\n");
    for (double v = ceil(x0 / xs - 1e-9) * xs; v <= x1 + 1e-9 * xs; v += xs) {
        double px = CH_LEFT + (v - x0) / (x1 - x0) * pw;
        text_printf(t,
                    "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
                    "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n",
                    px, CH_TOP, px, CH_H - CH_BOTTOM, px, CH_H - CH_BOTTOM + 15,
                    fabs(v) < 1e-12 * xs ? 0.0 : v);
    }
    for (double v = y0; v <= y1 + 1e-9 * ys; v += ys) {
        double py = CH_TOP + (y1 - v) / (y1 - y0) * ph;
        text_printf(t,
                    "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                    "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                    CH_LEFT, py, CH_W - CH_RIGHT, py, CH_LEFT - 6, py + 4,
                    fabs(v) < 1e-12 * ys ? 0.0 : v);
    }
    text_printf(t, "</g>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                   "stroke=\"#444\"/>\n",
                CH_LEFT, CH_TOP, CH_W - CH_LEFT - CH_RIGHT, CH_H - CH_TOP - CH_BOTTOM);
    text_printf(t, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">",
                CH_LEFT + (CH_W - CH_LEFT - CH_RIGHT) / 2, CH_H - 8);
    text_escaped(t, c->x_label);
    text_printf(t, "</text>\n");
}

/* One <polyline> per run of finite values. */
static void chart_lines(text *t, const chart_series *s, const chart *c, double x0, double x1,
                        double y0, double y1) {
    const double pw = CH_W - CH_LEFT - CH_RIGHT, ph = CH_H - CH_TOP - CH_BOTTOM;
    int open = 0;
    for (int i = 0; i <= c->n; i++) {
        int finite = i < c->n && isfinite(s->y[i]) && isfinite(c->x[i]);
        if (finite && !open) {
            text_printf(t, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.4\" points=\"",
                        s->color);
            open = 1;
        }
        if (finite) {
            double v = s->y[i] < y0 ? y0 : s->y[i] > y1 ? y1 : s->y[i];
            text_printf(t, "%.1f,%.1f ", CH_LEFT + (c->x[i] - x0) / (x1 - x0) * pw,
                        CH_TOP + (y1 - v) / (y1 - y0) * ph);
        } else if (open) {
            text_printf(t, "\"/>\n");
            open = 0;
        }
    }
}

static void chart_legend(text *t, const chart *c) {
    /* about 7 px per character of 12 px sans-serif, after a 36 px line sample */
    size_t longest = 0;
    for (int s = 0; s < c->num_series; s++)
        if (strlen(c->series[s].name) > longest) longest = strlen(c->series[s].name);
    const int row = 16, width = 44 + 7 * (int)(longest < 60 ? longest : 60);
    int left = CH_W - CH_RIGHT - width - 8, top = CH_TOP + 8;
    text_printf(t,
                "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"white\" "
                "fill-opacity=\"0.85\" stroke=\"#bbb\"/>\n",
                left, top, width, c->num_series * row + 8);
    for (int s = 0; s < c->num_series; s++) {
        int y = top + 4 + s * row + row / 2;
        text_printf(t,
                    "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
                    "stroke-width=\"3\"/><text x=\"%d\" y=\"%d\" font-size=\"12\">",
                    left + 8, y, left + 30, y, c->series[s].color, left + 36, y + 4);
        text_escaped(t, c->series[s].name);
        text_printf(t, "</text>\n");
    }
}

static int write_chart(const char *path, const chart *c, rl_error *err) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < c->n; i++) {
        if (!isfinite(c->x[i])) continue;
        x0 = fmin(x0, c->x[i]);
        x1 = fmax(x1, c->x[i]);
        for (int s = 0; s < c->num_series; s++)
            if (isfinite(c->series[s].y[i])) {
                y0 = fmin(y0, c->series[s].y[i]);
                y1 = fmax(y1, c->series[s].y[i]);
            }
    }
    if (!isfinite(x0)) x0 = 0, x1 = 1;
    if (!(x1 > x0)) x1 = x0 + 1;
    if (!isfinite(y0)) y0 = 0, y1 = 1;
    if (!isnan(c->y_min)) y0 = c->y_min;
    if (!isnan(c->y_max)) y1 = c->y_max;
    nice_range(&y0, &y1);
    text t = {0};
    text_printf(&t,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n"
                "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
                "<text x=\"%d\" y=\"20\" font-size=\"14\" font-weight=\"bold\">",
                CH_W, CH_H, CH_W, CH_H, CH_LEFT);
    text_escaped(&t, c->title);
    text_printf(&t, "</text>\n");
    chart_ticks(&t, c, x0, x1, y0, y1);
    for (int s = 0; s < c->num_series; s++) chart_lines(&t, &c->series[s], c, x0, x1, y0, y1);
    chart_legend(&t, c);
    text_printf(&t, "</svg>\n");
    int rc = text_write(&t, path, err);
    free(t.s);
    return rc;
}

/* ---- the two charts of the report -------------------------------------------------- */

int report_curves(const csv_table *log, const rl_dataset *ds, const char *run_dir,
                  const char *report_dir, rl_error *err) {
    const double *step = csv_column(log, "step");
    const char *loss_cols[] = {"loss", "ce", "dice", "unsup_loss"};
    const char *loss_names[] = {"total loss", "supervised cross-entropy", "supervised soft Dice",
                                "pseudo-label loss (unweighted)"};
    const char *colors[] = {"#222222", "#0072b2", "#e69f00", "#cc3311"};
    chart_series loss[4], pl[3];
    for (int i = 0; i < 4; i++) {
        loss[i] = (chart_series){loss_names[i], csv_column(log, loss_cols[i]), colors[i]};
        if (!loss[i].y)
            return rl_error_set(err, RL_EFORMAT, "%s/log.csv: no column '%s'", run_dir,
                                loss_cols[i]);
    }
    if (!step)
        return rl_error_set(err, RL_EFORMAT, "%s/log.csv: no column 'step'", run_dir);
    /* mean foreground pseudo-label Dice per step: the mean of the finite
     * pl_dice_<class> of classes 1..K-1 */
    int k = ds->num_classes;
    double *fg = malloc(((size_t)log->rows + 1) * sizeof *fg);
    const double **dice = calloc((size_t)k, sizeof *dice);
    if (!fg || !dice) {
        free(fg);
        free(dice);
        return rl_error_set(err, RL_ENOMEM, "out of memory");
    }
    for (int c = 1; c < k; c++) {
        char name[512];
        snprintf(name, sizeof name, "pl_dice_%s", ds->class_names[c]);
        dice[c] = csv_column(log, name);
    }
    for (int r = 0; r < log->rows; r++) {
        double sum = 0;
        int count = 0;
        for (int c = 1; c < k; c++)
            if (dice[c] && isfinite(dice[c][r])) {
                sum += dice[c][r];
                count++;
            }
        fg[r] = count ? sum / count : NAN;
    }
    free(dice);
    pl[0] = (chart_series){"pixel accuracy", csv_column(log, "pl_accuracy"), "#0072b2"};
    pl[1] = (chart_series){"mean foreground Dice", fg, "#cc3311"};
    pl[2] = (chart_series){"lambda (pseudo-label loss weight)", csv_column(log, "lambda"),
                           "#777777"};
    int rc = RL_OK;
    if (!pl[0].y || !pl[2].y)
        rc = rl_error_set(err, RL_EFORMAT, "%s/log.csv: no pl_accuracy or lambda column",
                          run_dir);
    char path[4096];
    if (!rc) rc = cli_make_path(path, sizeof path, err, "%s/loss.svg", report_dir);
    if (!rc) {
        chart c = {"Training losses per step", "step", step, log->rows, 1, loss, 4, 0, NAN};
        rc = write_chart(path, &c, err);
    }
    if (!rc) rc = cli_make_path(path, sizeof path, err, "%s/pseudolabels.svg", report_dir);
    if (!rc) {
        chart c = {"Pseudo-labels of the unlabeled batch vs the hidden expert labels", "step",
                   step, log->rows, 1, pl, 3, 0, 1};
        rc = write_chart(path, &c, err);
    }
    free(fg);
    return rc;
}
