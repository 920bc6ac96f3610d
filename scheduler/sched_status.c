/* sched_status: the status document of STATUS (see sched_status.h), built
 * with jansson so that escaping is a library's job, not ours. jansson
 * allocates through dmri_malloc (out of memory aborts there, the one abort),
 * so the only way a jansson call here fails is a programming error (a wrong
 * json_pack format), which the final assert catches. */
#include "sched_status.h"

#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dmri_alloc.h"

/* Length of the valid UTF-8 sequence at p (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    unsigned cp = c & (0x3fu >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* A JSON string from bytes a peer sent: invalid UTF-8 replaced by U+FFFD. */
static json_t *peer_string(const char *text) {
    const unsigned char *p = (const unsigned char *)text;
    size_t n = strlen(text);
    char *clean = dmri_malloc(3 * n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (k) {
            memcpy(clean + o, p + i, k);
            o += k;
            i += k;
        } else {
            memcpy(clean + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    clean[o] = '\0';
    json_t *j = json_stringn(clean, o);
    dmri_free(clean);
    return j;
}

char *dmri_sched_status_json(const dmri_sched_t *s) {
    json_set_alloc_funcs(dmri_malloc, dmri_free);
    json_t *workers = json_array();
    dmri_sched_worker_info_t w;
    for (int i = 0; dmri_sched_worker_info(s, i, &w) == 0; i++)
        json_array_append_new(workers, json_pack("{s:o, s:o, s:i}", "name", peer_string(w.name),
                                                 "address", peer_string(w.addr), "threads",
                                                 w.nthreads));
    dmri_sched_stats_t st;
    dmri_sched_stats(s, &st);
    json_t *root = json_pack("{s:o, s:{s:i, s:I, s:I}}", "workers", workers, "jobs", "active",
                             st.jobs, "done", (json_int_t)st.jobs_done, "failed",
                             (json_int_t)st.jobs_failed);
    char *text = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    assert(text && "json_pack formats above are wrong");
    return text ? text : dmri_strdup("{\"workers\":[],\"jobs\":{}}");
}
