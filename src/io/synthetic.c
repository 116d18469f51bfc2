/* Generated shapes and stripes: segmentation tasks whose right answer is
 * known, small enough to train on in a test. */
#include "reflabel/synthetic.h"

#include <math.h>

static float uniform(rl_rng *rng, float lo, float hi) {
    return lo + (hi - lo) * rl_rng_uniform(rng);
}

/* Signed-area test: is (x, y) inside triangle (a, b, c)? */
static int in_triangle(float x, float y, const float *t) {
    float d1 = (x - t[2]) * (t[1] - t[3]) - (t[0] - t[2]) * (y - t[3]);
    float d2 = (x - t[4]) * (t[3] - t[5]) - (t[2] - t[4]) * (y - t[5]);
    float d3 = (x - t[0]) * (t[5] - t[1]) - (t[4] - t[0]) * (y - t[1]);
    int neg = (d1 < 0) || (d2 < 0) || (d3 < 0);
    int pos = (d1 > 0) || (d2 > 0) || (d3 > 0);
    return !(neg && pos);
}

/* A placed shape's bounding circle; shapes never overlap, so every pixel's
 * class is decidable from the image. */
typedef struct placed {
    float cx, cy, reach;
} placed;

enum { MAX_SHAPES = 3 * (RL_SHAPES_CLASSES - 1), PLACEMENT_TRIES = 64 };

/* Finds a random centre whose circle of radius reach lies inside the image
 * and clear of the placed ones (2 pixels apart), and records it. Returns 0,
 * recording nothing, when PLACEMENT_TRIES draws found no free place. */
static int place(rl_rng *rng, int h, int w, float reach, placed *shapes, int *count, float *cx,
                 float *cy) {
    for (int t = 0; t < PLACEMENT_TRIES && *count < MAX_SHAPES; t++) {
        float x = uniform(rng, reach, (float)w - reach), y = uniform(rng, reach, (float)h - reach);
        int free_place = 1;
        for (int i = 0; i < *count && free_place; i++) {
            float dx = x - shapes[i].cx, dy = y - shapes[i].cy, gap = reach + shapes[i].reach + 2;
            free_place = dx * dx + dy * dy >= gap * gap;
        }
        if (free_place) {
            shapes[(*count)++] = (placed){x, y, reach};
            *cx = x;
            *cy = y;
            return 1;
        }
    }
    return 0;
}

/* Paints one shape of class cls at a random free place; gives up quietly
 * (the image just has one shape fewer) when the image is too crowded. */
static void paint_shape(rl_rng *rng, int cls, int h, int w, float *image, int32_t *labels,
                        placed *shapes, int *count) {
    float size = (float)(h < w ? h : w);
    float r = uniform(rng, 0.10f, 0.20f) * size;
    float reach = 1.35f * r; /* the triangle's corners reach 1.3 r */
    float cx, cy;
    if (!place(rng, h, w, reach, shapes, count, &cx, &cy)) return;
    /* Each class has its own brightness band, and neighbouring bands overlap
     * by half: intensity narrows the choice, shape decides it. */
    float value = uniform(rng, 0.35f + 0.15f * (float)cls, 0.65f + 0.15f * (float)cls);
    float tri[6];
    if (cls == 3) {
        float angle = uniform(rng, 0.0f, 6.2831853f);
        for (int i = 0; i < 3; i++) {
            float a = angle + 2.0943951f * (float)i;
            tri[2 * i] = cx + 1.3f * r * cosf(a);
            tri[2 * i + 1] = cy + 1.3f * r * sinf(a);
        }
    }
    int y0 = (int)fmaxf(0.0f, cy - 1.4f * r), y1 = (int)fminf((float)h, cy + 1.4f * r + 1);
    int x0 = (int)fmaxf(0.0f, cx - 1.4f * r), x1 = (int)fminf((float)w, cx + 1.4f * r + 1);
    for (int y = y0; y < y1; y++) {
        for (int x = x0; x < x1; x++) {
            float dx = (float)x + 0.5f - cx, dy = (float)y + 0.5f - cy;
            int inside;
            if (cls == 1) inside = dx * dx + dy * dy <= r * r;
            else if (cls == 2) inside = fabsf(dx) <= 0.85f * r && fabsf(dy) <= 0.85f * r;
            else inside = in_triangle((float)x + 0.5f, (float)y + 0.5f, tri);
            if (inside) {
                image[(size_t)y * w + x] = value;
                labels[(size_t)y * w + x] = cls;
            }
        }
    }
}

void rl_synth_shapes(rl_rng *rng, int h, int w, float *image, int32_t *labels) {
    float gx = uniform(rng, -0.15f, 0.15f), gy = uniform(rng, -0.15f, 0.15f);
    float base = uniform(rng, 0.1f, 0.3f);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            image[(size_t)y * w + x] = base + gx * (float)x / (float)w + gy * (float)y / (float)h;
            labels[(size_t)y * w + x] = 0;
        }
    placed shapes[MAX_SHAPES];
    int placed_count = 0;
    for (int cls = 1; cls < RL_SHAPES_CLASSES; cls++) {
        int instances = 1 + (int)rl_rng_below(rng, 2);
        for (int i = 0; i < instances; i++)
            paint_shape(rng, cls, h, w, image, labels, shapes, &placed_count);
    }
    for (size_t i = 0; i < (size_t)h * w; i++) image[i] += 0.08f * rl_rng_normal(rng);
}

/* One striped ellipse of class cls (1 horizontal, 2 vertical, 3 diagonal)
 * at a random free place; like paint_shape, it gives up quietly when the
 * image is too crowded. */
static void paint_stripes(rl_rng *rng, int cls, int h, int w, float *image, int32_t *labels,
                          placed *blobs, int *count) {
    float size = (float)(h < w ? h : w);
    float r = uniform(rng, 0.10f, 0.18f) * size;
    float a = r * uniform(rng, 0.7f, 1.3f), b = r * uniform(rng, 0.7f, 1.3f);
    float cx, cy;
    if (!place(rng, h, w, a > b ? a : b, blobs, count, &cx, &cy)) return;
    /* The class is the stripes' orientation, give or take 0.2 rad; period,
     * phase and contrast vary per blob, and the mean brightness is the
     * background's, so only the local pattern tells the classes apart. */
    static const float orientation[] = {0.0f, 0.0f, 1.5707963f, 0.7853982f};
    float theta = orientation[cls] + uniform(rng, -0.2f, 0.2f);
    float period = uniform(rng, 3.0f, 5.0f), phase = uniform(rng, 0.0f, 6.2831853f);
    float contrast = uniform(rng, 0.10f, 0.25f);
    float ux = cosf(theta) * 6.2831853f / period, uy = sinf(theta) * 6.2831853f / period;
    int y0 = (int)fmaxf(0.0f, cy - b), y1 = (int)fminf((float)h, cy + b + 1);
    int x0 = (int)fmaxf(0.0f, cx - a), x1 = (int)fminf((float)w, cx + a + 1);
    for (int y = y0; y < y1; y++) {
        for (int x = x0; x < x1; x++) {
            float px = (float)x + 0.5f, py = (float)y + 0.5f;
            float ex = (px - cx) / a, ey = (py - cy) / b;
            if (ex * ex + ey * ey > 1.0f) continue;
            image[(size_t)y * w + x] = 0.4f + contrast * sinf(px * ux + py * uy + phase);
            labels[(size_t)y * w + x] = cls;
        }
    }
}

void rl_synth_stripes(rl_rng *rng, int h, int w, float *image, int32_t *labels) {
    float base = uniform(rng, 0.3f, 0.5f);
    for (size_t i = 0; i < (size_t)h * w; i++) {
        image[i] = base;
        labels[i] = 0;
    }
    placed blobs[MAX_SHAPES];
    int count = 0;
    for (int cls = 1; cls < RL_STRIPES_CLASSES; cls++) {
        int instances = 1 + (int)rl_rng_below(rng, 2);
        for (int i = 0; i < instances; i++) paint_stripes(rng, cls, h, w, image, labels, blobs, &count);
    }
    for (size_t i = 0; i < (size_t)h * w; i++) image[i] += 0.05f * rl_rng_normal(rng);
}

void rl_synth_shapes_multilabel(rl_rng *rng, int h, int w, float *image, int32_t *labels) {
    float size = (float)(h < w ? h : w);
    float gx = uniform(rng, -0.15f, 0.15f), gy = uniform(rng, -0.15f, 0.15f);
    float base = uniform(rng, 0.1f, 0.3f);
    /* The disc lies wholly inside the image; the bar, horizontal or
     * vertical, runs through a point of the disc's central half, so the two
     * always overlap and each also has pixels of its own. */
    float r = uniform(rng, 0.22f, 0.32f) * size;
    float cx = uniform(rng, r + 1, (float)w - r - 1), cy = uniform(rng, r + 1, (float)h - r - 1);
    int vertical = (int)rl_rng_below(rng, 2);
    float half_width = uniform(rng, 0.08f, 0.12f) * size;
    float half_length = uniform(rng, 0.30f, 0.42f) * size;
    float bx = cx + uniform(rng, -0.5f, 0.5f) * r, by = cy + uniform(rng, -0.5f, 0.5f) * r;
    float disc_value = uniform(rng, 0.30f, 0.40f), bar_value = uniform(rng, 0.25f, 0.35f);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float px = (float)x + 0.5f, py = (float)y + 0.5f;
            float along = vertical ? py - by : px - bx, across = vertical ? px - bx : py - by;
            int in_disc = (px - cx) * (px - cx) + (py - cy) * (py - cy) <= r * r;
            int in_bar = fabsf(along) <= half_length && fabsf(across) <= half_width;
            size_t i = (size_t)y * w + x;
            image[i] = base + gx * (float)x / (float)w + gy * (float)y / (float)h +
                       (in_disc ? disc_value : 0.0f) + (in_bar ? bar_value : 0.0f);
            labels[i] = in_disc | in_bar << 1;
        }
    for (size_t i = 0; i < (size_t)h * w; i++) image[i] += 0.08f * rl_rng_normal(rng);
}
