/* textbuf: growable text with printf and JSON escaping (textbuf.h). */
#include "textbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dmri_alloc.h"

static void reserve(dmri_tb_t *b, size_t more) {
    if (b->n + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more + 1)
        cap *= 2;
    b->p = dmri_realloc(b->p, cap);
    b->cap = cap;
}

void dmri_tb_put(dmri_tb_t *b, const char *s, size_t len) {
    reserve(b, len);
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

void dmri_tb_puts(dmri_tb_t *b, const char *s) { dmri_tb_put(b, s, strlen(s)); }

void dmri_tb_printf(dmri_tb_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int len = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (len < 0)
        return;
    if ((size_t)len < sizeof small) {
        dmri_tb_put(b, small, (size_t)len);
        return;
    }
    reserve(b, (size_t)len);
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)len + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)len;
}

/* Length of the valid UTF-8 sequence at c (RFC 3629: no overlongs, no
 * surrogates, at most U+10FFFF), or 0 if the bytes there are not one. */
static int utf8_len(const unsigned char *c) {
    if (c[0] < 0x80)
        return 1;
    int n = c[0] >= 0xc2 && c[0] <= 0xdf ? 2 : c[0] >= 0xe0 && c[0] <= 0xef ? 3
          : c[0] >= 0xf0 && c[0] <= 0xf4 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((c[i] & 0xc0) != 0x80)
            return 0;
    if ((c[0] == 0xe0 && c[1] < 0xa0) || (c[0] == 0xed && c[1] >= 0xa0) ||
        (c[0] == 0xf0 && c[1] < 0x90) || (c[0] == 0xf4 && c[1] >= 0x90))
        return 0;
    return n;
}

void dmri_tb_json_str(dmri_tb_t *b, const char *s) {
    reserve(b, 2 + strlen(s));
    dmri_tb_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c;) {
        if (*c == '"' || *c == '\\') {
            char e[2] = {'\\', (char)*c};
            dmri_tb_put(b, e, 2);
        } else if (*c < 0x20 || *c == '<' || *c == '>' || *c == '&' || *c == 0x7f) {
            dmri_tb_printf(b, "\\u%04x", *c);
        } else {
            /* Peer-supplied names may be any bytes: JSON must be UTF-8, so a
             * byte that starts no valid sequence becomes U+FFFD. */
            int n = utf8_len(c);
            if (n == 0) {
                dmri_tb_puts(b, "\\ufffd");
                c++;
                continue;
            }
            dmri_tb_put(b, (const char *)c, (size_t)n);
            c += n;
            continue;
        }
        c++;
    }
    dmri_tb_put(b, "\"", 1);
}

void dmri_tb_json_num(dmri_tb_t *b, double x) {
    if (!isfinite(x))
        x = 0;
    dmri_tb_printf(b, "%.9g", x);
}

char *dmri_tb_take(dmri_tb_t *b) {
    if (!b->p)
        dmri_tb_put(b, "", 0);
    char *p = b->p;
    b->p = NULL;
    b->n = b->cap = 0;
    return p;
}

void dmri_tb_free(dmri_tb_t *b) {
    dmri_free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}
