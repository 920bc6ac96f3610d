/* test_peerguard: strikes, windows, bans and pruning of scheduler/peerguard.c,
 * with time passed in. */
#include <stdio.h>

#include "peerguard.h"

#include "check.h"

int main(void) {
    dmri_peerguard_t *g = dmri_peerguard_new(3, 10.0, 60.0);
    /* two strikes, the window passes, two more: no ban */
    CHECK_INT(dmri_peerguard_strike(g, "a", 0.0), 0);
    CHECK_INT(dmri_peerguard_strike(g, "a", 1.0), 0);
    CHECK_INT(dmri_peerguard_strike(g, "a", 10.5), 0);
    CHECK_INT(dmri_peerguard_strike(g, "a", 11.0), 0);
    CHECK_INT(dmri_peerguard_banned(g, "a", 11.0), 0);
    /* the third within the window bans, once */
    CHECK_INT(dmri_peerguard_strike(g, "a", 12.0), 1);
    CHECK_INT(dmri_peerguard_banned(g, "a", 12.0), 1);
    CHECK_INT(dmri_peerguard_strike(g, "a", 13.0), 0);
    CHECK_INT(dmri_peerguard_banned(g, "b", 13.0), 0);
    CHECK_INT(dmri_peerguard_banned(g, "a", 71.9), 1);
    CHECK_INT(dmri_peerguard_banned(g, "a", 72.1), 0);
    /* after the ban the count starts again */
    CHECK_INT(dmri_peerguard_strike(g, "a", 73.0), 0);
    CHECK_INT(dmri_peerguard_strike(g, "a", 74.0), 0);
    CHECK_INT(dmri_peerguard_strike(g, "a", 75.0), 1);
    /* pruning keeps banned and recent peers, forgets the rest */
    CHECK_INT(dmri_peerguard_strike(g, "b", 75.0), 0);
    CHECK_INT(dmri_peerguard_strike(g, "c", 75.0), 0);
    CHECK_INT(dmri_peerguard_count(g), 3);
    dmri_peerguard_prune(g, 90.0);
    CHECK_INT(dmri_peerguard_count(g), 1);
    CHECK_INT(dmri_peerguard_banned(g, "a", 90.0), 1);
    dmri_peerguard_prune(g, 200.0);
    CHECK_INT(dmri_peerguard_count(g), 0);
    CHECK_INT(dmri_peerguard_banned(g, "a", 200.0), 0);
    /* memory stays bounded under a flood of identities */
    char name[32];
    for (int i = 0; i < DMRI_PEERGUARD_MAX + 10; i++) {
        snprintf(name, sizeof name, "p%d", i);
        dmri_peerguard_strike(g, name, 300.0);
    }
    CHECK_INT(dmri_peerguard_count(g), DMRI_PEERGUARD_MAX);
    /* ... and the table frees itself once their window has passed */
    CHECK_INT(dmri_peerguard_strike(g, "new", 311.0), 0);
    CHECK_INT(dmri_peerguard_count(g), 1);
    dmri_peerguard_destroy(&g);
    dmri_peerguard_destroy(&g);
    CHECK(g == NULL);

    /* 0 disables */
    g = dmri_peerguard_new(0, 10.0, 60.0);
    for (int i = 0; i < 10; i++)
        CHECK_INT(dmri_peerguard_strike(g, "a", 1.0), 0);
    CHECK_INT(dmri_peerguard_count(g), 0);
    dmri_peerguard_destroy(&g);
    if (failures)
        fprintf(stderr, "%d failures\n", failures);
    return failures ? 1 : 0;
}
