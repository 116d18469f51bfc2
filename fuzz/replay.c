/* fuzz/replay.c - runs inputs through a fuzz target's LLVMFuzzerTestOneInput
 * without libFuzzer, so that the corpus and the saved crash inputs of
 * fuzz/regressions can be replayed by any C compiler's build (gcc, with or
 * without sanitizers) as ordinary tests.
 *
 *   replay_<target> PATH...
 *
 * Each PATH is a file or a folder (its regular files, sorted by name, not
 * recursive; hidden files skipped). Prints one line per folder and a total;
 * exits 0 when every input ran, 1 when a path could not be read, and
 * crashes (the point of the exercise) when an input makes the target crash.
 * The targets' scratch files go to a fresh folder under /tmp (passed on as
 * $TMPDIR), removed at the end so that test runs leave nothing behind. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads a whole file (any size, binary); NULL on error. */
static uint8_t *read_all(const char *path, size_t *size) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, fp);
        if (len < cap) break;
        uint8_t *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            fclose(fp);
            return NULL;
        }
        buf = bigger;
        cap *= 2;
    }
    int failed = ferror(fp);
    fclose(fp);
    if (failed) {
        free(buf);
        return NULL;
    }
    *size = len;
    return buf;
}

static int run_file(const char *path) {
    size_t size = 0;
    uint8_t *data = read_all(path, &size);
    if (!data) {
        perror(path);
        return 1;
    }
    /* Print before running: if the input crashes, the last line names it. */
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, size);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of dir in name order; counts them in *count. */
static int run_folder(const char *dir, int *count) {
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return 1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int failed = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **bigger = realloc(names, cap * sizeof *names);
            if (!bigger) {
                failed = 1;
                break;
            }
            names = bigger;
        }
        if (!(names[n] = strdup(e->d_name))) {
            failed = 1;
            break;
        }
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, compare_names);
    for (size_t i = 0; i < n && !failed; i++) {
        char path[4096];
        struct stat st;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= sizeof path) {
            failed = 1;
            break;
        }
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        failed = run_file(path);
        (*count)++;
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return failed;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_FOLDER...\n", argv[0]);
        return 2;
    }
    char scratch[] = "/tmp/reflabel-replay-XXXXXX";
    if (!mkdtemp(scratch) || setenv("TMPDIR", scratch, 1) != 0) {
        perror("replay: scratch folder");
        return 1;
    }
    int total = 0, failed = 0;
    for (int i = 1; i < argc && !failed; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            failed = 1;
        } else if (S_ISDIR(st.st_mode)) {
            int count = 0;
            failed = run_folder(argv[i], &count);
            printf("replay: %s: %d input%s\n", argv[i], count, count == 1 ? "" : "s");
            total += count;
        } else {
            failed = run_file(argv[i]);
            total++;
        }
    }
    printf("replay: %d input%s, %s\n", total, total == 1 ? "" : "s",
           failed ? "stopped on an unreadable path" : "no crash");
    /* Depth first, so that each folder is empty when its turn comes. */
    nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failed;
}
