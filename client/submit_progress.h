/* submit_progress: what dmri-submit shows while subjects run — the progress
 * line of one subject, the 10 % steps at which a log gets a new line, and on
 * a terminal a block of one line per subject redrawn in place (ANSI cursor
 * movement), which other messages must clear before they print. */
#ifndef DMRI_SUBMIT_PROGRESS_H
#define DMRI_SUBMIT_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define DMRI_SUBMIT_BAR 10 /* characters of the bar */

/* "100307  [#####.....]  52%  123/236 tasks  nlmeans": name left-aligned in
 * name_width columns, the bar and percentage rounded down (100 % only when
 * done == total), the step omitted when empty; total == 0 reads "waiting".
 * Written into out (always NUL-terminated, truncated to outsz - 1 bytes).
 * Returns the length written. */
size_t dmri_submit_progress_line(char *out, size_t outsz, const char *name, int name_width,
                                 uint64_t done, uint64_t total, const char *step);

/* Tenths completed, 0..10 (done > total counts as 10); -1 when total is 0. */
int dmri_submit_progress_decile(uint64_t done, uint64_t total);

/* The in-place block on a terminal. Embedded by the caller, zero-initialised
 * apart from out and cols. Not thread-safe. */
typedef struct {
    FILE *out;        /* the terminal stream */
    int cols;         /* terminal width; lines are cut to cols - 1 so none wraps */
    int drawn;        /* lines of the block on screen now, the cursor below them */
} dmri_submit_block_t;

/* Replace the block on screen with these n lines (n may be 0). */
void dmri_submit_block_draw(dmri_submit_block_t *b, const char *const *lines, int n);
/* Erase the block so that a message can be printed where it was. */
void dmri_submit_block_clear(dmri_submit_block_t *b);

#endif
