/* PNG reading and writing: every colour type and bit depth a label map or an
 * image may come in, corrupt files, and round trips. The inputs are written
 * with libpng itself, independently of the code under test. */
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/image.h"
#include "testutil.h"

static char g_dir[2048];  /* this run's scratch folder */
static char g_path[4096]; /* the last file named by tmp_file */

static const char *tmp_file(const char *name) {
    snprintf(g_path, sizeof g_path, "%s/%s", g_dir, name);
    return g_path;
}

/* Writes a PNG whose rows are already packed as libpng expects them. */
static void write_raw_png(const char *path, int w, int h, int depth, int color_type,
                          const unsigned char *rows, size_t rowbytes, const png_color *palette,
                          int palette_size, int interlace) {
    FILE *fp = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "libpng failed writing the test input %s\n", path);
        exit(1);
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color_type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (palette) png_set_PLTE(png, info, palette, palette_size);
    png_write_info(png, info);
    png_bytep *row_ptrs = malloc(sizeof *row_ptrs * (size_t)h);
    for (int y = 0; y < h; y++) row_ptrs[y] = (png_bytep)(rows + rowbytes * (size_t)y);
    png_write_image(png, row_ptrs);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row_ptrs);
    fclose(fp);
}

/* The header's bit depth of a PNG file, via libpng. */
static int png_file_depth(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return -1;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    int depth = -1;
    if (!setjmp(png_jmpbuf(png))) {
        png_init_io(png, fp);
        png_read_info(png, info);
        depth = png_get_bit_depth(png, info);
    }
    png_destroy_read_struct(&png, &info, NULL);
    fclose(fp);
    return depth;
}

static void test_gray_8_and_16(void) {
    const int w = 5, h = 3;
    unsigned char g8[15];
    for (int i = 0; i < w * h; i++) g8[i] = (unsigned char)(i * 17);
    write_raw_png(tmp_file("g8.png"), w, h, 8, PNG_COLOR_TYPE_GRAY, g8, (size_t)w, NULL, 0, 0);
    rl_volume v;
    rl_error err = {0, ""};
    CHECK_OK(rl_volume_read(g_path, &v, &err));
    CHECK(v.nx == w && v.ny == h && v.nz == 1 && v.format == RL_FORMAT_PNG);
    CHECK(v.spacing[0] == 1 && v.spacing[1] == 1 && v.spacing[2] == 1);
    int same = 1;
    for (int i = 0; i < w * h; i++) same &= v.data[i] == (float)(i * 17);
    CHECK(same);
    rl_volume_free(&v);

    unsigned char g16[30];
    for (int i = 0; i < w * h; i++) {
        unsigned value = (unsigned)(i * 4369); /* up to 61166: uses the high byte */
        if (i == w * h - 1) value = 65535;
        g16[2 * i] = (unsigned char)(value >> 8);
        g16[2 * i + 1] = (unsigned char)(value & 0xff);
    }
    write_raw_png(tmp_file("g16.png"), w, h, 16, PNG_COLOR_TYPE_GRAY, g16, (size_t)w * 2, NULL,
                  0, 0);
    CHECK_OK(rl_volume_read_labels(g_path, &v, &err));
    same = 1;
    for (int i = 0; i < w * h - 1; i++) same &= v.data[i] == (float)(i * 4369);
    CHECK(same);
    CHECK(v.data[w * h - 1] == 65535.0f);
    rl_volume_free(&v);
}

static void test_low_bit_depths(void) {
    const int w = 9, h = 2; /* odd width: the last byte of a row is partial */
    for (int depth = 1; depth <= 4; depth *= 2) {
        int per_byte = 8 / depth, max = (1 << depth) - 1;
        size_t rowbytes = (size_t)(w + per_byte - 1) / (size_t)per_byte;
        unsigned char packed[2 * 5] = {0};
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int value = (x + y) % (max + 1);
                int shift = 8 - depth * (x % per_byte + 1); /* leftmost pixel in high bits */
                packed[(size_t)y * rowbytes + (size_t)(x / per_byte)] |=
                    (unsigned char)(value << shift);
            }
        char name[32];
        snprintf(name, sizeof name, "gray%d.png", depth);
        write_raw_png(tmp_file(name), w, h, depth, PNG_COLOR_TYPE_GRAY, packed, rowbytes, NULL, 0,
                      0);
        rl_volume v;
        rl_error err = {0, ""};
        CHECK_OK(rl_volume_read_labels(g_path, &v, &err));
        int same = v.nx == w && v.ny == h;
        for (int y = 0; same && y < h; y++)
            for (int x = 0; x < w; x++) same &= v.data[y * w + x] == (float)((x + y) % (max + 1));
        CHECK_MSG(same, "%d-bit gray values", depth);
        rl_volume_free(&v);
    }
}

static void test_palette(void) {
    const int w = 4, h = 2;
    png_color palette[3] = {{0, 0, 0}, {255, 0, 0}, {10, 200, 30}};
    unsigned char idx[8] = {0, 1, 2, 1, 2, 2, 0, 1};
    write_raw_png(tmp_file("pal8.png"), w, h, 8, PNG_COLOR_TYPE_PALETTE, idx, (size_t)w, palette,
                  3, 0);
    rl_volume v;
    rl_error err = {0, ""};
    CHECK_OK(rl_volume_read_labels(g_path, &v, &err));
    int same = 1;
    for (int i = 0; i < w * h; i++) same &= v.data[i] == (float)idx[i];
    CHECK_MSG(same, "palette labels are the indices");
    rl_volume_free(&v);
    CHECK_OK(rl_volume_read(g_path, &v, &err));
    float lum2 = 0.299f * 10 + 0.587f * 200 + 0.114f * 30;
    CHECK(fabsf(v.data[1] - 0.299f * 255) < 1e-3f);
    CHECK(fabsf(v.data[2] - lum2) < 1e-3f);
    CHECK(v.data[0] == 0.0f);
    rl_volume_free(&v);

    /* 4-bit palette: indices 0..15 unpacked, not rescaled. */
    png_color pal16[16];
    for (int i = 0; i < 16; i++) pal16[i] = (png_color){(png_byte)(i * 16), 0, 0};
    unsigned char packed[2] = {0x0f, 0xa5}; /* indices 0, 15, 10, 5 */
    write_raw_png(tmp_file("pal4.png"), 4, 1, 4, PNG_COLOR_TYPE_PALETTE, packed, 2, pal16, 16, 0);
    CHECK_OK(rl_volume_read_labels(g_path, &v, &err));
    CHECK(v.data[0] == 0 && v.data[1] == 15 && v.data[2] == 10 && v.data[3] == 5);
    rl_volume_free(&v);
}

static void test_alpha_and_colour(void) {
    const int w = 3, h = 1;
    unsigned char ga[6] = {7, 255, 8, 0, 9, 128};
    write_raw_png(tmp_file("ga.png"), w, h, 8, PNG_COLOR_TYPE_GRAY_ALPHA, ga, 6, NULL, 0, 0);
    rl_volume v;
    rl_error err = {0, ""};
    CHECK_OK(rl_volume_read_labels(g_path, &v, &err));
    CHECK(v.data[0] == 7 && v.data[1] == 8 && v.data[2] == 9);
    rl_volume_free(&v);

    unsigned char rgb[9] = {255, 0, 0, 0, 255, 0, 10, 20, 30};
    write_raw_png(tmp_file("rgb.png"), w, h, 8, PNG_COLOR_TYPE_RGB, rgb, 9, NULL, 0, 0);
    int rc = rl_volume_read_labels(g_path, &v, &err);
    CHECK(rc == RL_EUNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "RGB") && strstr(err.msg, "rgb.png"), "%s", err.msg);
    CHECK(v.data == NULL);
    CHECK_OK(rl_volume_read(g_path, &v, &err));
    CHECK(fabsf(v.data[0] - 0.299f * 255) < 1e-3f && fabsf(v.data[1] - 0.587f * 255) < 1e-3f);
    CHECK(fabsf(v.data[2] - (0.299f * 10 + 0.587f * 20 + 0.114f * 30)) < 1e-3f);
    rl_volume_free(&v);

    unsigned char rgba[12] = {0, 0, 255, 9, 1, 2, 3, 4, 5, 6, 7, 8};
    write_raw_png(tmp_file("rgba.png"), w, h, 8, PNG_COLOR_TYPE_RGB_ALPHA, rgba, 12, NULL, 0, 0);
    CHECK(rl_volume_read_labels(g_path, &v, &err) == RL_EUNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "RGBA") != NULL, "%s", err.msg);
    CHECK_OK(rl_volume_read(g_path, &v, &err));
    CHECK(fabsf(v.data[0] - 0.114f * 255) < 1e-3f);
    rl_volume_free(&v);
}

static void test_interlaced(void) {
    const int w = 11, h = 7;
    unsigned char g[77];
    for (int i = 0; i < w * h; i++) g[i] = (unsigned char)(i * 3);
    write_raw_png(tmp_file("adam7.png"), w, h, 8, PNG_COLOR_TYPE_GRAY, g, (size_t)w, NULL, 0, 1);
    rl_volume v;
    rl_error err = {0, ""};
    CHECK_OK(rl_volume_read(g_path, &v, &err));
    int same = 1;
    for (int i = 0; i < w * h; i++) same &= v.data[i] == (float)g[i];
    CHECK_MSG(same, "interlaced PNG decoded");
    rl_volume_free(&v);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (n) fwrite(data, 1, n, fp);
    fclose(fp);
}

static void expect_read_error(const char *path, const char *needle) {
    rl_volume v;
    rl_error err = {0, ""};
    int rc = rl_volume_read(path, &v, &err);
    CHECK_MSG(rc != RL_OK, "%s should fail", path);
    CHECK_MSG(strstr(err.msg, path) != NULL, "error should name the file: %s", err.msg);
    if (needle) CHECK_MSG(strstr(err.msg, needle) != NULL, "'%s' not in: %s", needle, err.msg);
    CHECK(v.data == NULL && v.nx == 0);
}

static void test_corrupt_files(void) {
    /* A valid file to cut short and to damage. */
    const int w = 64, h = 64;
    unsigned char *g = malloc((size_t)w * h);
    rl_rng rng;
    rl_rng_seed(&rng, 5, 0);
    for (int i = 0; i < w * h; i++) g[i] = (unsigned char)rl_rng_below(&rng, 256);
    write_raw_png(tmp_file("whole.png"), w, h, 8, PNG_COLOR_TYPE_GRAY, g, (size_t)w, NULL, 0, 0);
    char *bytes = NULL;
    size_t size = 0;
    rl_error err = {0, ""};
    CHECK_OK(rl_read_file(g_path, 1 << 20, &bytes, &size, &err));

    size_t cuts[] = {8, 20, 40, size / 2, size - 13};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        write_bytes(tmp_file("truncated.png"), bytes, cuts[i]);
        expect_read_error(g_path, NULL);
    }
    /* Damaged compressed data (CRC mismatch or inflate error). */
    char *damaged = malloc(size);
    memcpy(damaged, bytes, size);
    for (size_t i = size / 2; i < size / 2 + 32; i++) damaged[i] ^= 0x5a;
    write_bytes(tmp_file("damaged.png"), damaged, size);
    expect_read_error(g_path, "corrupt PNG");
    /* A PNG signature followed by garbage. */
    for (size_t i = 8; i < size; i++) damaged[i] = (char)rl_rng_below(&rng, 256);
    write_bytes(tmp_file("garbage.png"), damaged, size);
    expect_read_error(g_path, "corrupt PNG");
    write_bytes(tmp_file("text.png"), "hello, not a png", 16);
    expect_read_error(g_path, "not a PNG");
    write_bytes(tmp_file("empty.png"), "", 0);
    expect_read_error(g_path, "not a PNG");
    expect_read_error(tmp_file("missing.png"), "cannot open");
    expect_read_error(tmp_file("volume.mha"), "unsupported file type");
    free(damaged);
    free(bytes);
    free(g);
}

static void test_write_round_trips(void) {
    rl_volume like;
    rl_error err = {0, ""};
    CHECK_OK(rl_volume_create(&like, 6, 4, 1, &err));
    int32_t labels[24];
    for (int i = 0; i < 24; i++) labels[i] = i * 11; /* max 253: 8-bit */
    CHECK_OK(rl_volume_write_labels(tmp_file("labels8.png"), &like, labels, &err));
    CHECK(png_file_depth(g_path) == 8);
    rl_volume v;
    CHECK_OK(rl_volume_read_labels(g_path, &v, &err));
    int32_t back[24];
    CHECK_OK(rl_labels_from_volume(&v, back, &err));
    CHECK(v.nx == 6 && v.ny == 4 && memcmp(back, labels, sizeof back) == 0);
    rl_volume_free(&v);

    labels[5] = 40000; /* needs 16 bits */
    CHECK_OK(rl_volume_write_labels(tmp_file("labels16.png"), &like, labels, &err));
    CHECK(png_file_depth(g_path) == 16);
    CHECK_OK(rl_volume_read_labels(g_path, &v, &err));
    CHECK_OK(rl_labels_from_volume(&v, back, &err));
    CHECK(memcmp(back, labels, sizeof back) == 0);
    rl_volume_free(&v);

    labels[5] = 70000;
    CHECK(rl_volume_write_labels(tmp_file("labels17.png"), &like, labels, &err) == RL_ERANGE);
    labels[5] = -1;
    CHECK(rl_volume_write_labels(tmp_file("labelsneg.png"), &like, labels, &err) == RL_EINVAL);

    /* Confidences: 16-bit, round(65535 * clamp(v, 0, 1)). */
    float conf[24];
    for (int i = 0; i < 24; i++) conf[i] = (float)i / 23.0f;
    conf[0] = -0.5f;
    conf[23] = 1.5f;
    CHECK_OK(rl_volume_write_float(tmp_file("conf.png"), &like, conf, &err));
    CHECK(png_file_depth(g_path) == 16);
    CHECK_OK(rl_volume_read(g_path, &v, &err));
    int close = v.data[0] == 0.0f && v.data[23] == 65535.0f;
    for (int i = 1; i < 23; i++) close &= fabsf(v.data[i] - 65535.0f * conf[i]) <= 0.5f;
    CHECK_MSG(close, "confidence quantisation");
    rl_volume_free(&v);
    conf[3] = NAN;
    CHECK(rl_volume_write_float(tmp_file("nan.png"), &like, conf, &err) == RL_ENONFINITE);

    /* Images: integers are stored exactly, anything else is refused. */
    for (int i = 0; i < 24; i++) like.data[i] = (float)(i * 1000);
    CHECK_OK(rl_volume_write_image(tmp_file("image16.png"), &like, &err));
    CHECK_OK(rl_volume_read(g_path, &v, &err));
    CHECK(memcmp(v.data, like.data, sizeof(float) * 24) == 0);
    rl_volume_free(&v);
    like.data[2] = 0.5f;
    CHECK(rl_volume_write_image(tmp_file("fraction.png"), &like, &err) == RL_ERANGE);
    rl_volume_free(&like);

    /* A volume of several slices does not fit a PNG. */
    CHECK_OK(rl_volume_create(&like, 2, 2, 3, &err));
    int32_t zeros[12] = {0};
    CHECK(rl_volume_write_labels(tmp_file("deep.png"), &like, zeros, &err) == RL_EINVAL);
    CHECK_MSG(strstr(err.msg, "one slice") != NULL, "%s", err.msg);
    rl_volume_free(&like);

    /* A failed write leaves nothing behind, not even the temporary. */
    CHECK_OK(rl_volume_create(&like, 2, 2, 1, &err));
    char path[4096];
    snprintf(path, sizeof path, "%s/no/such/dir/x.png", g_dir);
    CHECK(rl_volume_write_labels(path, &like, zeros, &err) == RL_EIO);
    rl_volume_free(&like);
}

/* fuzz/regressions/png: a 69-byte file whose header claims 65535 x 32768
 * pixels. It must be refused from its size, before a 10 GB allocation. */
static const unsigned char oom_header_png[] = {
  0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d,
  0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x80, 0x00,
  0x08, 0x00, 0x00, 0x00, 0x00, 0x6d, 0x8a, 0x8d, 0x82, 0x00, 0x00, 0x00,
  0x0c, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0xa0, 0x3d, 0x00,
  0x00, 0x00, 0x64, 0x00, 0x01, 0x86, 0x64, 0x3c, 0x35, 0x00, 0x00, 0x00,
  0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82
};

static void test_header_larger_than_file(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/oom.png", g_dir);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(oom_header_png, 1, sizeof oom_header_png, f) == sizeof oom_header_png);
    if (f) fclose(f);
    rl_volume vol;
    rl_error err = {0, ""};
    CHECK(rl_volume_read_labels(path, &vol, &err) == RL_EFORMAT);
    CHECK_MSG(strstr(err.msg, "more than") && strstr(err.msg, "oom.png"), "%s", err.msg);
    CHECK(vol.data == NULL);
}

int main(void) {
    const char *dir = rl_test_tmpdir("png");
    if (!dir) return 1;
    snprintf(g_dir, sizeof g_dir, "%s", dir);
    test_gray_8_and_16();
    test_low_bit_depths();
    test_palette();
    test_alpha_and_colour();
    test_interlaced();
    test_corrupt_files();
    test_write_round_trips();
    test_header_larger_than_file();
    return rl_test_report("test_png");
}
