/* submit_progress: progress lines and the terminal block (see
 * submit_progress.h). The block is redrawn by moving the cursor up over it and
 * overwriting each line, which flickers less than erasing it first. */
#include "submit_progress.h"

#include <inttypes.h>
#include <string.h>

int dmri_submit_progress_decile(uint64_t done, uint64_t total) {
    if (total == 0)
        return -1;
    if (done >= total)
        return 10;
    /* done < total here, so done * 10 / total < 10; the division avoids
     * overflowing done * 10 for absurd counts sent by a peer. */
    return done <= UINT64_MAX / 10 ? (int)(done * 10 / total) : (int)(done / (total / 10 + 1));
}

size_t dmri_submit_progress_line(char *out, size_t outsz, const char *name, int name_width,
                                 uint64_t done, uint64_t total, const char *step) {
    if (outsz == 0)
        return 0;
    int n;
    if (total == 0) {
        n = snprintf(out, outsz, "%-*s  [%.*s]  waiting", name_width, name, DMRI_SUBMIT_BAR,
                     "..........................................");
    } else {
        int pct;
        if (done >= total)
            pct = 100;
        else if (done <= UINT64_MAX / 100)
            pct = (int)(done * 100 / total);
        else
            pct = (int)(done / (total / 100 + 1));
        int filled = dmri_submit_progress_decile(done, total) * DMRI_SUBMIT_BAR / 10;
        char bar[DMRI_SUBMIT_BAR + 1];
        for (int i = 0; i < DMRI_SUBMIT_BAR; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[DMRI_SUBMIT_BAR] = '\0';
        n = snprintf(out, outsz, "%-*s  [%s] %3d%%  %" PRIu64 "/%" PRIu64 " tasks%s%s",
                     name_width, name, bar, pct, done, total, step && step[0] ? "  " : "",
                     step ? step : "");
    }
    if (n < 0) {
        out[0] = '\0';
        return 0;
    }
    return (size_t)n < outsz ? (size_t)n : outsz - 1;
}

void dmri_submit_block_draw(dmri_submit_block_t *b, const char *const *lines, int n) {
    int width = b->cols > 1 ? b->cols - 1 : 79;
    if (b->drawn > 0)
        fprintf(b->out, "\r\033[%dA", b->drawn);
    for (int i = 0; i < n; i++)
        fprintf(b->out, "\r%.*s\033[K\n", width, lines[i]);
    if (n < b->drawn)
        fputs("\033[J", b->out);
    b->drawn = n;
    fflush(b->out);
}

void dmri_submit_block_clear(dmri_submit_block_t *b) {
    if (b->drawn > 0) {
        fprintf(b->out, "\r\033[%dA\033[J", b->drawn);
        fflush(b->out);
    }
    b->drawn = 0;
}
