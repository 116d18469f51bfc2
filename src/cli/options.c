/* The option tables' engine: parsing, --help, values in words (--resume)
 * and in the run's JSON, all read from the rows (options.h). */
#include "options.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void *place(const cli_option *o, const cli_at *at) {
    return (char *)at->in[o->in] + o->offset;
}

static int takes_value(const cli_option *o) { return o->kind != CLI_FLAG; }

/* The word of an enum value ("?" if none). */
static const char *enum_word(const cli_option *o, int v) {
    for (int i = 0; i < o->count; i++)
        if ((o->values ? o->values[i] : i) == v) return o->names[i];
    return "?";
}

/* "a, b or c" */
static void join_words(const cli_option *o, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < o->count && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s",
                                i == 0 ? "" : i == o->count - 1 ? " or " : ", ", o->names[i]);
}

/* The stored value in words; unset rows that were not given say so. */
static void value_text(const cli_option *o, const cli_at *at, int given, char *buf, size_t size) {
    const void *p = place(o, at);
    if (o->unset && !given) {
        snprintf(buf, size, "%s", o->unset);
        return;
    }
    switch (o->kind) {
    case CLI_INT: snprintf(buf, size, "%d", *(const int *)p); break;
    case CLI_I64: snprintf(buf, size, "%lld", (long long)*(const int64_t *)p); break;
    case CLI_U64: snprintf(buf, size, "%llu", (unsigned long long)*(const uint64_t *)p); break;
    case CLI_FLOAT: snprintf(buf, size, "%.17g", (double)*(const float *)p); break;
    case CLI_DOUBLE: snprintf(buf, size, "%.17g", *(const double *)p); break;
    case CLI_ENUM: snprintf(buf, size, "%s", enum_word(o, *(const int *)p)); break;
    case CLI_FLAG: snprintf(buf, size, "%s", *(const int *)p == o->value ? "yes" : "no"); break;
    case CLI_STRING: snprintf(buf, size, "%s", *(const char *const *)p ? *(const char *const *)p : ""); break;
    case CLI_SIZE: snprintf(buf, size, "%dx%d", ((const int *)p)[0], ((const int *)p)[1]); break;
    }
}

/* The default as --help shows it ("" for none). */
static void default_text(const cli_option *o, const cli_at *defaults, char *buf, size_t size) {
    const void *p = place(o, defaults);
    buf[0] = '\0';
    if (o->describe_default) o->describe_default(buf, size);
    else if (o->unset) snprintf(buf, size, "%s", o->unset);
    else if (o->kind == CLI_FLOAT) snprintf(buf, size, "%g", (double)*(const float *)p);
    else if (o->kind == CLI_DOUBLE) snprintf(buf, size, "%g", *(const double *)p);
    else if (o->kind != CLI_FLAG && o->kind != CLI_STRING && o->kind != CLI_SIZE)
        value_text(o, defaults, 1, buf, size);
}

static void print_help(const cli_command *cmd, const cli_at *defaults) {
    fputs(cmd->synopsis, stdout);
    for (int g = 0; g < cmd->group_count; g++) {
        printf("%s\n", cmd->groups[g].heading);
        for (int i = 0; i < cmd->count; i++) {
            const cli_option *o = cmd->rows[i];
            if (!o->flag || strcmp(o->group, cmd->groups[g].key) != 0) continue;
            char left[64], def[128];
            snprintf(left, sizeof left, "%s%s%s", o->flag, o->metavar ? " " : "",
                     o->metavar ? o->metavar : "");
            default_text(o, defaults, def, sizeof def);
            printf("  %-21s ", left);
            for (const char *line = o->help; line;) {
                const char *end = strchr(line, '\n');
                int n = end ? (int)(end - line) : (int)strlen(line);
                printf("%.*s", n, line);
                if (!end && def[0]) printf(" (%s)", def);
                printf("\n");
                line = end ? end + 1 : NULL;
                if (line) printf("%24s", "");
            }
            if (o->alias) printf("%24salso spelt %s\n", "", o->alias);
        }
    }
    if (cmd->epilogue) fputs(cmd->epilogue, stdout);
}

static int find_row(const cli_command *cmd, const char *word) {
    for (int i = 0; i < cmd->count; i++) {
        const cli_option *o = cmd->rows[i];
        if (o->flag && (!strcmp(word, o->flag) || (o->alias && !strcmp(word, o->alias)))) return i;
    }
    return -1;
}

/* Stores the argument v of option a (a row's flag or alias). */
static int parse_value(const cli_command *cmd, const cli_option *o, const char *a, const char *v,
                       void *p) {
    const char *name = cmd->name;
    int rc = 0, n = 0;
    double d = 0;
    switch (o->kind) {
    case CLI_INT: return cli_parse_int(name, a, v, (long)o->lo, (long)o->hi, (int *)p);
    case CLI_I64:
        rc = cli_parse_int(name, a, v, (long)o->lo, (long)o->hi, &n);
        if (!rc) *(int64_t *)p = n;
        return rc;
    case CLI_U64:
        rc = cli_parse_float(name, a, v, o->lo, o->hi, &d);
        if (!rc) *(uint64_t *)p = (uint64_t)(long)d;
        return rc;
    case CLI_FLOAT:
    case CLI_DOUBLE:
        rc = cli_parse_float(name, a, v, o->lo, o->hi, &d);
        if (!rc && o->lo_open && !(d > o->lo))
            rc = cli_usage_error(name, "%s expects a number in (%g, %g], got '%s'", a, o->lo, o->hi, v);
        if (!rc && o->kind == CLI_FLOAT) *(float *)p = (float)d;
        else if (!rc) *(double *)p = d;
        return rc;
    case CLI_ENUM:
        for (int i = 0; i < o->count; i++)
            if (!strcmp(v, o->names[i])) {
                *(int *)p = o->values ? o->values[i] : i;
                return 0;
            }
        char words[256];
        join_words(o, words, sizeof words);
        return cli_usage_error(name, "%s must be %s", o->flag, words);
    case CLI_STRING: *(const char **)p = v; return 0;
    case CLI_SIZE: {
        int h, w;
        char tail;
        if (sscanf(v, "%dx%d%c", &h, &w, &tail) != 2 || h <= 0 || w <= 0)
            return cli_usage_error(name, "%s expects HxW, e.g. 128x128", o->flag);
        ((int *)p)[0] = h;
        ((int *)p)[1] = w;
        return 0;
    }
    case CLI_FLAG: *(int *)p = o->value; return 0;
    }
    return 0;
}

int cli_parse(const cli_command *cmd, int argc, char **argv, const cli_at *at, cli_given *given,
              const cli_at *defaults) {
    memset(given, 0, sizeof *given);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_help(cmd, defaults);
            return -1;
        }
        int r = find_row(cmd, a);
        if (r < 0) return cli_usage_error(cmd->name, "unknown option '%s'", a);
        const cli_option *o = cmd->rows[r];
        if (takes_value(o) && !v) return cli_usage_error(cmd->name, "%s needs a value", a);
        int rc = parse_value(cmd, o, a, v, place(o, at));
        if (rc) return rc;
        given->row[r] = 1;
        if (takes_value(o)) i++;
    }
    return 0;
}

int cli_given_flag(const cli_command *cmd, const cli_given *given, const char *flag) {
    int r = find_row(cmd, flag);
    return r >= 0 && given->row[r];
}

const cli_option *cli_first_conflict(const cli_command *cmd, const cli_at *was,
                                     const cli_given *given_was, const cli_at *now,
                                     const cli_given *given_now, char *was_text,
                                     char *now_text, size_t size) {
    for (int i = 0; i < cmd->count; i++) {
        const cli_option *o = cmd->rows[i];
        if (!o->flag || o->resume_free) continue;
        value_text(o, was, given_was->row[i], was_text, size);
        value_text(o, now, given_now->row[i], now_text, size);
        if (strcmp(was_text, now_text) != 0) return o;
    }
    return NULL;
}

void cli_json_section(const cli_command *cmd, int section, const cli_at *at, cJSON *obj) {
    char key[64];
    for (int i = 0; i < cmd->count; i++) {
        const cli_option *o = cmd->rows[i];
        if (!o->json || !(o->json_in & section)) continue;
        const void *p = place(o, at);
        switch (o->kind) {
        case CLI_INT:
        case CLI_I64:
        case CLI_U64:
        case CLI_FLOAT:
        case CLI_DOUBLE: {
            double d = o->kind == CLI_INT     ? *(const int *)p
                       : o->kind == CLI_I64   ? (double)*(const int64_t *)p
                       : o->kind == CLI_U64   ? (double)*(const uint64_t *)p
                       : o->kind == CLI_FLOAT ? (double)*(const float *)p
                                              : *(const double *)p;
            cJSON_AddNumberToObject(obj, o->json, d);
            break;
        }
        case CLI_ENUM: cJSON_AddStringToObject(obj, o->json, enum_word(o, *(const int *)p)); break;
        case CLI_FLAG:
            if (o->names) cJSON_AddStringToObject(obj, o->json, o->names[*(const int *)p]);
            else cJSON_AddBoolToObject(obj, o->json, *(const int *)p);
            break;
        case CLI_STRING: {
            const char *s = *(const char *const *)p;
            cJSON_AddStringToObject(obj, o->json, s ? s : o->unset ? o->unset : "");
            break;
        }
        case CLI_SIZE:
            for (int k = 0; k < 2; k++) {
                snprintf(key, sizeof key, "%s_%c", o->json, "hw"[k]);
                cJSON_AddNumberToObject(obj, key, ((const int *)p)[k]);
            }
            break;
        }
    }
}
