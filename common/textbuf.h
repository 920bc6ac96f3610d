/* textbuf: a growable NUL-terminated text buffer with printf-style appends
 * and JSON string escaping — for the JSON and HTML that the status page,
 * /metrics and the performance report produce. Out of memory aborts through
 * dmri_alloc (the one place allowed to). */
#ifndef DMRI_TEXTBUF_H
#define DMRI_TEXTBUF_H

#include <stddef.h>

typedef struct {
    char *p;       /* the text, always NUL-terminated once anything was added */
    size_t n;      /* bytes used, without the NUL */
    size_t cap;    /* bytes allocated */
} dmri_tb_t;

/* Append printf-formatted text. */
void dmri_tb_printf(dmri_tb_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append raw bytes. */
void dmri_tb_put(dmri_tb_t *b, const char *s, size_t len);
/* Append a NUL-terminated string. */
void dmri_tb_puts(dmri_tb_t *b, const char *s);
/* Append s as a quoted JSON string: '"', '\\' and control bytes escaped, and
 * '<', '>', '&' as \u003c... so the text can sit inside an HTML <script>. */
void dmri_tb_json_str(dmri_tb_t *b, const char *s);
/* Append a JSON number; NaN and infinities (not JSON) become 0. */
void dmri_tb_json_num(dmri_tb_t *b, double x);
/* Hand the text over (malloc'd, never NULL: "" when empty); b is emptied. */
char *dmri_tb_take(dmri_tb_t *b);
/* Free the text; safe twice. */
void dmri_tb_free(dmri_tb_t *b);

#endif
