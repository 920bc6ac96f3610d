/* submit_status: rendering of the scheduler's STATUS document for
 * dmri-submit --status (see submit_status.h), parsed with jansson. */
#include "submit_status.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_COL_MAX 40

/* A peer-provided string made safe for a terminal, cut to max bytes. */
static void printable(const char *s, char *out, size_t max) {
    size_t n = 0;
    for (; s[n] && n < max; n++) {
        unsigned char c = (unsigned char)s[n];
        out[n] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    out[n] = '\0';
}

int dmri_submit_status_render(const char *json, size_t len, int as_json, const char *scheduler,
                              char **out, dmri_err_t *err) {
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return dmri_err_set(err, DMRI_EFORMAT, "status from %s is not JSON: %s (line %d)",
                            scheduler, jerr.text, jerr.line);
    json_t *workers = json_object_get(root, "workers"), *jobs = json_object_get(root, "jobs");
    json_int_t active = 0, done = 0, failed = 0;
    int ok = json_is_array(workers) &&
             json_unpack(jobs, "{s:I, s:I, s:I}", "active", &active, "done", &done, "failed",
                         &failed) == 0;
    size_t i;
    json_t *w;
    long threads = 0;
    int wname = 4, waddr = 7;
    json_array_foreach(workers, i, w) {
        const char *name, *addr;
        json_int_t t;
        if (!ok || json_unpack(w, "{s:s, s:s, s:I}", "name", &name, "address", &addr, "threads",
                               &t) != 0) {
            ok = 0;
            break;
        }
        threads += (long)t;
        int nl = (int)strlen(name), al = (int)strlen(addr);
        wname = nl > wname ? (nl < NAME_COL_MAX ? nl : NAME_COL_MAX) : wname;
        waddr = al > waddr ? (al < NAME_COL_MAX ? al : NAME_COL_MAX) : waddr;
    }
    if (!ok) {
        json_decref(root);
        return dmri_err_set(err, DMRI_EFORMAT,
                            "status from %s lacks \"workers\" [{name, address, threads}] or "
                            "\"jobs\" {active, done, failed}",
                            scheduler);
    }
    size_t size = 0;
    FILE *f = open_memstream(out, &size);
    if (!f) {
        json_decref(root);
        return dmri_err_set(err, DMRI_EIO, "open_memstream failed");
    }
    if (as_json) {
        fwrite(json, 1, len, f);
        fputc('\n', f);
    } else {
        size_t nw = json_array_size(workers);
        fprintf(f, "scheduler %s: %zu worker%s, %ld thread%s; jobs: %lld active, %lld done, "
                   "%lld failed\n",
                scheduler, nw, nw == 1 ? "" : "s", threads, threads == 1 ? "" : "s",
                (long long)active, (long long)done, (long long)failed);
        if (nw > 0)
            fprintf(f, "%-*s  %-*s  %s\n", wname, "NAME", waddr, "ADDRESS", "THREADS");
        json_array_foreach(workers, i, w) {
            char name[NAME_COL_MAX + 1], addr[NAME_COL_MAX + 1];
            printable(json_string_value(json_object_get(w, "name")), name, NAME_COL_MAX);
            printable(json_string_value(json_object_get(w, "address")), addr, NAME_COL_MAX);
            fprintf(f, "%-*s  %-*s  %lld\n", wname, name, waddr, addr,
                    (long long)json_integer_value(json_object_get(w, "threads")));
        }
    }
    json_decref(root);
    if (fclose(f) != 0) {
        free(*out);
        *out = NULL;
        return dmri_err_set(err, DMRI_EIO, "rendering the status failed");
    }
    return 0;
}
