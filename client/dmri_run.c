/* dmri-run: the whole pipeline (mask, noise, NL-means, tensor fit) for one or
 * more subjects on this machine, all cores by default. One bad subject fails
 * alone; the exit code says whether any failed. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "pipeline_version.h"
#include "run.h"
#include "subject.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: dmri-run [options] SUBJECT [SUBJECT ...]\n"
            "\n"
            "Runs brain mask -> noise estimate -> NL-means denoising -> tensor fit\n"
            "(the science of dipy 1.6) on each SUBJECT, a folder holding data.nii.gz,\n"
            "bvals and bvecs, or an HCP id found under --data-dir as\n"
            "DIR/<id>/T1w/Diffusion/ or DIR/<id>/.\n"
            "\n"
            "options:\n"
            "  --data-dir DIR       where HCP ids are looked up (default: $DMRI_DATA_DIR or .)\n"
            "  --out DIR            outputs go to DIR/<subject>/ (default: dmri-out)\n"
            "  --threads N          worker threads (default: all cores)\n"
            "  --b0-threshold B     volumes with b <= B are b0 (default: 10)\n"
            "  --skip-denoise       fit the tensor on the raw data\n"
            "  --save-denoised      also write denoised.nii.gz\n"
            "  --preview            also write preview.png: FA and colour FA, 3 axial slices\n"
            "  --slab N             cut NL-means and the fit into z-slabs of N slices\n"
            "                       (default: whole volumes, denoised in place)\n"
            DMRI_S3_OPTIONS_HELP
            "  --quiet              print nothing but errors\n"
            "  --version, --help\n"
            "\n"
            "Outputs: mask.nii.gz, dti_fa/md/ad/rd.nii.gz, dti_evecs.nii.gz,\n"
            "dti_color_fa.nii.gz, [denoised.nii.gz], summary.json.\n"
            "Exit status: 0 if every subject succeeded, 1 if any failed, 2 on usage errors.\n");
}

static int parse_int(const char *opt, const char *s, int lo, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > 1 << 20) {
        fprintf(stderr, "dmri-run: %s: expected an integer >= %d, got '%s'\n", opt, lo, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    dmri_run_opts_t o;
    dmri_run_opts_default(&o);
    const char *data_dir = getenv("DMRI_DATA_DIR");
    const char *out_root = "dmri-out";
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o.nthreads = ncpu > 0 ? (int)ncpu : 1;
    int quiet = 0;

    enum { OPT_DATA = 256, OPT_OUT, OPT_THREADS, OPT_B0, OPT_SKIP, OPT_SAVE, OPT_PREVIEW, OPT_SLAB,
           OPT_QUIET, OPT_VERSION, OPT_HELP, OPT_S3 };
    static const struct option longopts[] = {
        {"data-dir", required_argument, 0, OPT_DATA},
        {"out", required_argument, 0, OPT_OUT},
        {"threads", required_argument, 0, OPT_THREADS},
        {"b0-threshold", required_argument, 0, OPT_B0},
        {"skip-denoise", no_argument, 0, OPT_SKIP},
        {"save-denoised", no_argument, 0, OPT_SAVE},
        {"preview", no_argument, 0, OPT_PREVIEW},
        {"slab", required_argument, 0, OPT_SLAB},
        {"quiet", no_argument, 0, OPT_QUIET},
        {"version", no_argument, 0, OPT_VERSION},
        {"help", no_argument, 0, OPT_HELP},
        DMRI_S3_LONGOPTS(OPT_S3),
        {0, 0, 0, 0}};
    dmri_s3_source_t s3 = {.retries = -1};
    int use_s3 = 0;
    int c, li = -1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        switch (c) {
        case OPT_S3: {
            dmri_err_t e = {0};
            if (dmri_s3_source_option(&s3, &use_s3, longopts[li].name, optarg, &e) != 0) {
                fprintf(stderr, "dmri-run: %s\n", e.msg);
                return 2;
            }
            break;
        }
        case OPT_DATA: data_dir = optarg; break;
        case OPT_OUT: out_root = optarg; break;
        case OPT_THREADS:
            if (parse_int("--threads", optarg, 1, &o.nthreads) != 0)
                return 2;
            break;
        case OPT_B0: {
            char *end;
            o.b0_threshold = strtod(optarg, &end);
            if (*optarg == '\0' || *end != '\0' || !(o.b0_threshold >= 0)) {
                fprintf(stderr, "dmri-run: --b0-threshold: expected a number >= 0, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        }
        case OPT_SKIP: o.skip_denoise = 1; break;
        case OPT_SAVE: o.save_denoised = 1; break;
        case OPT_PREVIEW: o.preview = 1; break;
        case OPT_SLAB:
            if (parse_int("--slab", optarg, 1, &o.slab_slices) != 0)
                return 2;
            break;
        case OPT_QUIET: quiet = 1; break;
        case OPT_VERSION: printf("dmri-run %s\n", dmri_version()); return 0;
        case 'h':
        case OPT_HELP: usage(stdout); return 0;
        default:
            fprintf(stderr, "dmri-run: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "dmri-run: no subject given\n");
        usage(stderr);
        return 2;
    }
    if (o.save_denoised && o.skip_denoise) {
        fprintf(stderr, "dmri-run: --save-denoised and --skip-denoise exclude each other\n");
        return 2;
    }
    o.log = quiet ? NULL : stdout;
    o.s3 = use_s3 ? &s3 : NULL;
    o.progress_tty = !quiet && isatty(fileno(stdout));

    int nsub = argc - optind, nfail = 0;
    for (int i = optind; i < argc; i++) {
        dmri_err_t err = {0};
        dmri_subject_paths_t paths;
        int rc = dmri_subject_resolve_s3(argv[i], data_dir, use_s3 ? &s3 : NULL, &paths, &err);
        char out_dir[DMRI_PATH_MAX];
        if (rc == 0 && dmri_path_join(out_dir, sizeof out_dir, out_root, paths.name) != 0)
            rc = dmri_err_set(&err, DMRI_ERANGE, "%s: output path too long", out_root);
        if (rc == 0) {
            if (!quiet)
                printf("dmri-run: subject %s (%s) -> %s/, %d thread%s\n", paths.name, paths.dir,
                       out_dir, o.nthreads, o.nthreads == 1 ? "" : "s");
            o.out_dir = out_dir;
            int existed = dmri_is_dir(out_dir);
            rc = dmri_run_subject(&paths, &o, &err);
            if (rc != 0 && !existed)
                rmdir(out_dir); /* only if empty: a failed subject leaves no folder */
        }
        if (rc != 0) {
            nfail++;
            fprintf(stderr, "dmri-run: subject %s FAILED: %s\n", argv[i],
                    err.msg[0] ? err.msg : dmri_strerror(rc));
        } else if (!quiet) {
            printf("dmri-run: subject %s done; FA map: %s/dti_fa.nii.gz\n", paths.name, out_dir);
        }
        fflush(stdout);
    }
    if (nsub > 1 && !quiet)
        printf("dmri-run: %d of %d subjects succeeded\n", nsub - nfail, nsub);
    return nfail ? 1 : 0;
}
