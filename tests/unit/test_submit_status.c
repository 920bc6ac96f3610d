/* test_submit_status: dmri-submit --status rendering — a table with the
 * counts and one row per worker, control characters neutralised, --json
 * passing the document through, and documents of the wrong shape refused
 * with a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../client/submit_status.c"
#include "check.h"

static char *render(const char *doc, int as_json, int expect_rc, dmri_err_t *err) {
    char *out = NULL;
    dmri_err_clear(err);
    int rc = dmri_submit_status_render(doc, strlen(doc), as_json, "10.0.0.1:8786", &out, err);
    CHECK_INT(rc, expect_rc);
    CHECK((rc == 0) == (out != NULL));
    return out;
}

int main(void) {
    dmri_err_t err = {0};
    const char *doc =
        "{\"workers\":[{\"name\":\"slave1\",\"address\":\"tcp://10.0.0.2:4001\",\"threads\":4},"
        "{\"name\":\"a\\u0007b\",\"address\":\"tcp://10.0.0.3:4002\",\"threads\":2}],"
        "\"jobs\":{\"active\":1,\"done\":3,\"failed\":0},\"extra\":{\"ignored\":true}}";
    char *t = render(doc, 0, 0, &err);
    if (t) {
        CHECK(strstr(t, "scheduler 10.0.0.1:8786: 2 workers, 6 threads; jobs: 1 active, 3 done, "
                        "0 failed\n") == t);
        CHECK(strstr(t, "NAME    ADDRESS              THREADS\n") != NULL);
        CHECK(strstr(t, "slave1  tcp://10.0.0.2:4001  4\n") != NULL);
        CHECK(strstr(t, "a?b     tcp://10.0.0.3:4002  2\n") != NULL);
        CHECK(strchr(t, '\a') == NULL);
    }
    free(t);
    t = render(doc, 1, 0, &err);
    if (t) {
        CHECK(strncmp(t, doc, strlen(doc)) == 0);
        CHECK(strcmp(t + strlen(doc), "\n") == 0);
    }
    free(t);
    t = render("{\"workers\":[],\"jobs\":{\"active\":0,\"done\":0,\"failed\":0}}", 0, 0, &err);
    if (t)
        CHECK(strcmp(t, "scheduler 10.0.0.1:8786: 0 workers, 0 threads; jobs: 0 active, 0 done, "
                        "0 failed\n") == 0);
    free(t);

    free(render("not json", 0, DMRI_EFORMAT, &err));
    CHECK_HAS(err, "not JSON");
    free(render("{\"workers\":{},\"jobs\":{\"active\":0,\"done\":0,\"failed\":0}}", 0,
                DMRI_EFORMAT, &err));
    CHECK_HAS(err, "workers");
    free(render("{\"workers\":[{\"name\":\"x\",\"threads\":1}],"
                "\"jobs\":{\"active\":0,\"done\":0,\"failed\":0}}", 1, DMRI_EFORMAT, &err));
    CHECK_HAS(err, "10.0.0.1:8786");
    free(render("{\"workers\":[],\"jobs\":{\"active\":\"1\",\"done\":0,\"failed\":0}}", 0,
                DMRI_EFORMAT, &err));
    free(render("{\"workers\":[],\"workers\":[],\"jobs\":{}}", 0, DMRI_EFORMAT, &err));
    if (failures) {
        fprintf(stderr, "test_submit_status: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_submit_status: ok\n");
    return 0;
}
