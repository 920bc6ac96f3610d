/* pipeline_version: the version string reported in summaries and --version. */
#include "pipeline_version.h"

const char *dmri_version(void) { return DMRI_VERSION; }
