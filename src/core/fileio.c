/* Whole-file reads and atomic writes (temporary name + fsync + rename), so
 * that a killed or failing writer never leaves a truncated file under its
 * final name. */
#include "reflabel/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int rl_temp_path_for(const char *path, char *tmp, size_t tmp_size, rl_error *err) {
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    const char *name = path + dir_len;
    /* ".<name>.tmp<pid>.<ext>" keeps the extension last for writers that
     * choose compression from it. */
    const char *ext = strstr(name, ".nii.gz");
    if (!ext) ext = strrchr(name, '.');
    if (!ext || ext == name) ext = name + strlen(name);
    int n = snprintf(tmp, tmp_size, "%.*s.%.*s.tmp%ld%s", (int)dir_len, path,
                     (int)(ext - name), name, (long)getpid(), ext);
    if (n < 0 || (size_t)n >= tmp_size)
        return rl_error_set(err, RL_EINVAL, "%s: path too long", path);
    return RL_OK;
}

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int rl_publish_file(const char *tmp, const char *path, rl_error *err) {
    if (fsync_path(tmp) != 0) {
        int e = errno;
        unlink(tmp);
        return rl_error_set(err, RL_EIO, "%s: cannot flush to disk: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return rl_error_set(err, RL_EIO, "%s: cannot rename into place: %s", path,
                            strerror(e));
    }
    return RL_OK;
}

int rl_atomic_open(rl_atomic_file *f, const char *path, rl_error *err) {
    f->fp = NULL;
    int n = snprintf(f->final_path, sizeof f->final_path, "%s", path);
    if (n < 0 || (size_t)n >= sizeof f->final_path)
        return rl_error_set(err, RL_EINVAL, "%s: path too long", path);
    int rc = rl_temp_path_for(path, f->tmp_path, sizeof f->tmp_path, err);
    if (rc) return rc;
    f->fp = fopen(f->tmp_path, "wb");
    if (!f->fp)
        return rl_error_set(err, RL_EIO, "%s: cannot write: %s", path, strerror(errno));
    return RL_OK;
}

int rl_atomic_commit(rl_atomic_file *f, rl_error *err) {
    FILE *fp = f->fp;
    f->fp = NULL;
    if (!fp) return rl_error_set(err, RL_EINVAL, "%s: file not open", f->final_path);
    int bad = ferror(fp) || fflush(fp) != 0;
    int e = errno;
    if (!bad && fsync(fileno(fp)) != 0) {
        bad = 1;
        e = errno;
    }
    if (fclose(fp) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        unlink(f->tmp_path);
        return rl_error_set(err, RL_EIO, "%s: write failed: %s", f->final_path,
                            strerror(e ? e : EIO));
    }
    if (rename(f->tmp_path, f->final_path) != 0) {
        e = errno;
        unlink(f->tmp_path);
        return rl_error_set(err, RL_EIO, "%s: cannot rename into place: %s", f->final_path,
                            strerror(e));
    }
    return RL_OK;
}

void rl_atomic_abort(rl_atomic_file *f) {
    if (f->fp) fclose(f->fp);
    f->fp = NULL;
    unlink(f->tmp_path);
}

int rl_write_file_atomic(const char *path, const void *data, size_t size, rl_error *err) {
    rl_atomic_file f;
    int rc = rl_atomic_open(&f, path, err);
    if (rc) return rc;
    if (size && fwrite(data, 1, size, f.fp) != size) {
        int e = errno;
        rl_atomic_abort(&f);
        return rl_error_set(err, RL_EIO, "%s: write failed: %s", path, strerror(e));
    }
    return rl_atomic_commit(&f, err);
}

int rl_open_regular_file(const char *path, FILE **fp, uint64_t *size, rl_error *err) {
    *size = 0;
    *fp = fopen(path, "rb");
    if (!*fp) return rl_error_set(err, RL_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(*fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(*fp);
        *fp = NULL;
        return rl_error_set(err, RL_EIO, "%s: not a regular file", path);
    }
    *size = (uint64_t)st.st_size;
    return RL_OK;
}

int rl_read_file(const char *path, size_t max_bytes, char **data, size_t *size,
                 rl_error *err) {
    *data = NULL;
    *size = 0;
    FILE *fp;
    uint64_t file_size;
    int rc = rl_open_regular_file(path, &fp, &file_size, err);
    if (rc) return rc;
    if (file_size > (uint64_t)max_bytes) {
        fclose(fp);
        return rl_error_set(err, RL_ERANGE, "%s: file of %lld bytes exceeds the limit of %zu",
                            path, (long long)file_size, max_bytes);
    }
    size_t n = (size_t)file_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(fp);
        return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    }
    if (n && fread(buf, 1, n, fp) != n) {
        free(buf);
        fclose(fp);
        return rl_error_set(err, RL_EIO, "%s: read failed", path);
    }
    fclose(fp);
    buf[n] = '\0';
    *data = buf;
    *size = n;
    return RL_OK;
}

int rl_make_dirs(const char *path, rl_error *err) {
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "%s", path);
    if (n < 0 || (size_t)n >= sizeof buf)
        return rl_error_set(err, RL_EINVAL, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return rl_error_set(err, RL_EIO, "%s: cannot create folder: %s", buf,
                                strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return rl_error_set(err, RL_EIO, "%s: cannot create folder: %s", buf, strerror(errno));
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
        return rl_error_set(err, RL_EIO, "%s: not a folder", buf);
    return RL_OK;
}
