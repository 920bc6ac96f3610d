/* Unit tests of common/strmap: against a brute-force table under random
 * inserts, replacements and deletions. */
#include <stdio.h>
#include <string.h>

#include "strmap.h"

int main(void) {
    dmri_strmap_t m;
    dmri_strmap_init(&m);
    enum { N = 5000 };
    static int ref[N];
    static int present[N];
    unsigned long long s = 12345;
    int failures = 0;
    for (int it = 0; it < 200000; it++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int k = (int)((s >> 33) % N);
        int op = (int)((s >> 20) % 3);
        char key[32];
        snprintf(key, sizeof key, "J%d/raw/g%d", k % 97, k);
        if (op < 2) {
            dmri_strmap_put(&m, key, it);
            ref[k] = it;
            present[k] = 1;
        } else {
            int was = dmri_strmap_del(&m, key);
            if (was != present[k]) {
                fprintf(stderr, "del %s: %d != %d\n", key, was, present[k]);
                failures++;
            }
            present[k] = 0;
        }
    }
    size_t count = 0;
    for (int k = 0; k < N; k++) {
        char key[32];
        snprintf(key, sizeof key, "J%d/raw/g%d", k % 97, k);
        int v = -1, got = dmri_strmap_get(&m, key, &v);
        if (got != present[k] || (got && v != ref[k])) {
            fprintf(stderr, "get %s: %d/%d vs %d/%d\n", key, got, v, present[k], ref[k]);
            failures++;
        }
        count += (size_t)present[k];
    }
    if (count != m.count) {
        fprintf(stderr, "count %zu != %zu\n", m.count, count);
        failures++;
    }
    dmri_strmap_close(&m);
    dmri_strmap_close(&m);
    return failures ? 1 : 0;
}
