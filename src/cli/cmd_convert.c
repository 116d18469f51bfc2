/* reflabel convert: the paper's source datasets into nnU-Net v2 raw layout
 * (see reflabel/convert.h and docs/DATA.md). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "reflabel/convert.h"


static const char *convert_usage =
    "usage: reflabel convert jsrt --images DIR --masks DIR --out DIR [--size 1024|2048] [--force]\n"
    "       reflabel convert retouch --in DIR --out DIR [--force]\n"
    "\n"
    "jsrt: JSRT chest radiographs (--images: the folder of *.IMG files, e.g.\n"
    "  All247images/) with the SCR masks (--masks: the folder holding 'left lung',\n"
    "  'right lung', 'heart', 'left clavicle', 'right clavicle', each with\n"
    "  <CASE>.gif). --size 1024 (default) averages the image to the masks' 1024 grid\n"
    "  (0.35 mm); 2048 upsamples the masks (nearest) to the image grid (0.175 mm).\n"
    "  Labels are multi-label bit sets: bit c-1 set = structure c (1 left lung,\n"
    "  2 right lung, 3 heart, 4 left clavicle, 5 right clavicle).\n"
    "retouch: RETOUCH OCT (--in: TrainingSet-Release/ holding\n"
    "  {Cirrus,Spectralis,Topcon}/<CASE>/oct.mhd and reference.mhd; labels\n"
    "  0 background, 1 IRF, 2 SRF, 3 PED).\n"
    "Both write NIfTI (.nii.gz) cases into DIR/imagesTr, DIR/labelsTr and\n"
    "DIR/dataset.json; a non-empty DIR is refused unless --force.\n";

int cmd_convert(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(convert_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *what = argv[1];
    int is_jsrt = !strcmp(what, "jsrt");
    if (!is_jsrt && strcmp(what, "retouch") != 0)
        return cli_usage_error("convert", "unknown dataset '%s' (available: jsrt, retouch)", what);
    const char *images = NULL, *masks = NULL, *in = NULL, *out = NULL;
    int size = 1024, force = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(convert_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--force")) {
            force = 1;
            continue;
        }
        if (!v) return cli_missing_value("convert", a, convert_usage);
        int rc = 0;
        if (!strcmp(a, "--out")) out = v;
        else if (is_jsrt && !strcmp(a, "--images")) images = v;
        else if (is_jsrt && !strcmp(a, "--masks")) masks = v;
        else if (is_jsrt && !strcmp(a, "--size")) {
            rc = cli_parse_int("convert", a, v, 1024, 2048, &size);
            if (!rc && size != 1024 && size != 2048)
                rc = cli_usage_error("convert", "--size must be 1024 or 2048");
        } else if (!is_jsrt && !strcmp(a, "--in")) in = v;
        else return cli_usage_error("convert", "unknown option '%s' for %s", a, what);
        if (rc) return rc;
        i++;
    }
    if (!out) return cli_usage_error("convert", "--out is required");
    if (is_jsrt && (!images || !masks))
        return cli_usage_error("convert", "jsrt needs --images and --masks");
    if (!is_jsrt && !in) return cli_usage_error("convert", "retouch needs --in");
    rl_error err = {0, ""};
    rl_convert_summary sum;
    int rc = is_jsrt ? rl_convert_jsrt(images, masks, out, size, force, &sum, &err)
                     : rl_convert_retouch(in, out, force, &sum, &err);
    if (rc) return cli_fail(&err);
    printf("%s dataset in %s: %d labelled and %d unlabelled training cases\n", what, out,
           sum.num_labeled, sum.num_unlabeled);
    return 0;
}
