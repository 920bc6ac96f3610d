/* pipeline_version: the dmri version string. */
#ifndef DMRI_PIPELINE_VERSION_H
#define DMRI_PIPELINE_VERSION_H

const char *dmri_version(void);

#endif
