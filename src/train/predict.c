/* Prediction of whole cases, slice by slice, with the same normalisation as
 * training. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"

/* The encoding's decision per pixel of logits (outputs, ph, pw) restricted
 * to the (h, w) window of the padded map; confidence may be NULL. */
static void decode_window(const rl_encoding *enc, const float *logits, int ph, int pw, int h,
                          int w, int32_t *labels, float *confidence) {
    size_t phw = (size_t)ph * pw;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t at = (size_t)y * w + x;
            labels[at] = rl_encoding_decode(enc, logits + (size_t)y * pw + x, phw,
                                            confidence ? &confidence[at] : NULL);
        }
}

/* Both kinds of prediction: normalise, run every padded slice, decode. */
static int predict_case(rl_unet *net, const rl_volume *images, int channels, int axis,
                        int multilabel, int32_t *labels_out, float *confidence_out,
                        rl_error *err) {
    const rl_unet_config *nc = rl_unet_get_config(net);
    if (channels != nc->in_channels)
        return rl_error_set(err, RL_EINVAL, "case has %d channels, the model expects %d",
                            channels, nc->in_channels);
    const rl_volume *v0 = &images[0];
    if (v0->nz == 1) axis = 2;
    int h, w, m = 1 << nc->depth;
    /* k outputs: k classes, or k structures (k + 1 "classes" with none) */
    rl_encoding enc;
    rl_encoding_init(&enc, multilabel, multilabel ? nc->num_classes + 1 : nc->num_classes);
    rl_slice_shape(v0->nx, v0->ny, v0->nz, axis, &h, &w);
    int ph = (h + m - 1) / m * m, pw = (w + m - 1) / m * m;
    size_t plane = (size_t)h * w, pplane = (size_t)ph * pw;
    int slices = rl_volume_num_slices(v0, axis);

    rl_volume *norm = calloc((size_t)channels, sizeof *norm);
    float *slice = malloc(plane * sizeof *slice);
    float *x = malloc(pplane * (size_t)channels * sizeof *x);
    int32_t *lab = malloc(plane * sizeof *lab);
    float *conf = confidence_out ? malloc(plane * sizeof *conf) : NULL;
    int rc = RL_OK;
    if (!norm || !slice || !x || !lab || (confidence_out && !conf))
        rc = rl_error_set(err, RL_ENOMEM, "out of memory for prediction");
    for (int c = 0; c < channels && !rc; c++) {
        rc = rl_volume_create_like(&norm[c], &images[c], err);
        if (!rc) {
            memcpy(norm[c].data, images[c].data, rl_volume_numel(v0) * sizeof(float));
            rc = rl_normalize_volume(&norm[c], err);
        }
    }
    if (!rc) rc = rl_unet_plan(net, 1, ph, pw, 0, err);
    rl_volume conf_vol = {0};
    conf_vol.nx = v0->nx;
    conf_vol.ny = v0->ny;
    conf_vol.nz = v0->nz;
    conf_vol.data = confidence_out;
    for (int s = 0; s < slices && !rc; s++) {
        memset(x, 0, pplane * (size_t)channels * sizeof *x);
        for (int c = 0; c < channels && !rc; c++) {
            rc = rl_volume_get_slice(&norm[c], axis, s, slice, &h, &w, NULL, err);
            for (int yy = 0; !rc && yy < h; yy++)
                memcpy(x + (size_t)c * pplane + (size_t)yy * pw, slice + (size_t)yy * w,
                       (size_t)w * sizeof *x);
        }
        if (!rc) rc = rl_unet_forward(net, x, 0, err);
        if (rc) break;
        decode_window(&enc, rl_unet_logits(net).data, ph, pw, h, w, lab, conf);
        rc = rl_labels_set_slice(labels_out, v0->nx, v0->ny, v0->nz, axis, s, lab, err);
        if (!rc && confidence_out) rc = rl_volume_set_slice(&conf_vol, axis, s, conf, err);
    }
    for (int c = 0; norm && c < channels; c++) rl_volume_free(&norm[c]);
    free(norm);
    free(slice);
    free(x);
    free(lab);
    free(conf);
    return rc;
}

int rl_predict_case(rl_unet *net, const rl_volume *images, int channels, int axis,
                    int32_t *labels_out, float *confidence_out, rl_error *err) {
    return predict_case(net, images, channels, axis, 0, labels_out, confidence_out, err);
}

int rl_predict_case_multilabel(rl_unet *net, const rl_volume *images, int channels, int axis,
                               int32_t *labels_out, float *confidence_out, rl_error *err) {
    const rl_unet_config *nc = rl_unet_get_config(net);
    if (nc->num_classes > RL_MULTILABEL_MAX_STRUCTURES)
        return rl_error_set(err, RL_ERANGE,
                            "a multi-label model has at most %d structures, this one has %d "
                            "outputs",
                            RL_MULTILABEL_MAX_STRUCTURES, nc->num_classes);
    return predict_case(net, images, channels, axis, 1, labels_out, confidence_out, err);
}
