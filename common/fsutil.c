/* fsutil: filesystem helpers (see fsutil.h). */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int dmri_mkdir_p(const char *path, dmri_err_t *err) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return dmri_err_set(err, DMRI_EINVAL, "%s: bad folder name", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char saved = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return dmri_err_set(err, DMRI_EIO, "%s: cannot create folder: %s", buf,
                                    strerror(errno));
            buf[i] = saved;
        }
    }
    if (!dmri_is_dir(path))
        return dmri_err_set(err, DMRI_EIO, "%s: exists and is not a folder", path);
    return 0;
}

int dmri_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int dmri_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int dmri_path_join(char *out, size_t outsz, const char *a, const char *b) {
    size_t la = strlen(a);
    int n;
    if (la > 0 && a[la - 1] == '/')
        n = snprintf(out, outsz, "%s%s", a, b);
    else
        n = snprintf(out, outsz, "%s/%s", a, b);
    return (n < 0 || (size_t)n >= outsz) ? DMRI_ERANGE : 0;
}

int dmri_tmp_name_for(char *out, size_t outsz, const char *path) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    int n = snprintf(out, outsz, "%.*s.tmp-%ld-%s", dirlen, path, (long)getpid(), base);
    return (n < 0 || (size_t)n >= outsz) ? DMRI_ERANGE : 0;
}

int dmri_write_file_atomic(const char *path, const void *data, size_t len, dmri_err_t *err) {
    char tmp[4096];
    if (dmri_tmp_name_for(tmp, sizeof tmp, path) != 0)
        return dmri_err_set(err, DMRI_ERANGE, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return dmri_err_set(err, DMRI_EIO, "%s: cannot write: %s", path, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return dmri_err_set(err, DMRI_EIO, "%s: write failed: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return dmri_err_set(err, DMRI_EIO, "%s: write failed: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return dmri_err_set(err, DMRI_EIO, "%s: cannot rename into place: %s", path,
                            strerror(e));
    }
    return 0;
}
