/* PNG reading and writing with libpng.
 *
 * libpng reports errors by longjmp'ing out of its own code. Each entry point
 * keeps everything it allocates in one context struct that lives in memory
 * (never in registers that setjmp could restore stale), so the single
 * cleanup path after a longjmp frees exactly what exists. libpng's warnings
 * are swallowed: the library never prints. */
#include "reflabel/image.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct png_ctx {
    FILE *fp;
    png_structp png;
    png_infop info;
    unsigned char *pixels; /* decoded rows, rowbytes each */
    png_bytep *rows;
    char msg[200]; /* libpng's error message */
} png_ctx;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->msg, sizeof ctx->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

/* Luminance weights of ITU-R BT.601, the usual "convert to gray". */
static float luminance(float r, float g, float b) {
    return 0.299f * r + 0.587f * g + 0.114f * b;
}

/* Sample c of pixel x in a decoded row: 8 or 16 bits (big-endian). */
static unsigned sample(const unsigned char *row, int x, int channels, int c, int depth16) {
    size_t i = (size_t)x * (size_t)channels + (size_t)c;
    if (depth16) return ((unsigned)row[2 * i] << 8) | row[2 * i + 1];
    return row[i];
}

/* Everything that can longjmp happens in here; ctx owns all allocations. */
static int png_decode(png_ctx *ctx, const char *path, int as_labels, rl_volume *vol,
                      rl_error *err) {
    if (setjmp(png_jmpbuf(ctx->png)))
        return rl_error_set(err, RL_EFORMAT, "%s: corrupt PNG: %s", path, ctx->msg);
    png_init_io(ctx->png, ctx->fp);
    png_set_user_limits(ctx->png, RL_PNG_MAX_EDGE, RL_PNG_MAX_EDGE);
    png_read_info(ctx->png, ctx->info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0;
    png_get_IHDR(ctx->png, ctx->info, &width, &height, &bit_depth, &color_type, NULL, NULL,
                 NULL);
    int is_palette = color_type == PNG_COLOR_TYPE_PALETTE;
    int is_color = color_type == PNG_COLOR_TYPE_RGB || color_type == PNG_COLOR_TYPE_RGB_ALPHA;
    if (as_labels && is_color)
        return rl_error_set(err, RL_EUNSUPPORTED,
                            "%s: RGB%s PNG cannot be a label map (store labels as 8/16-bit "
                            "gray or palette indices)",
                            path, color_type == PNG_COLOR_TYPE_RGB_ALPHA ? "A" : "");
    if ((int64_t)width * (int64_t)height > RL_VOLUME_MAX_VOXELS)
        return rl_error_set(err, RL_ERANGE, "%s: %ux%u PNG exceeds the voxel limit", path,
                            (unsigned)width, (unsigned)height);
    /* 1/2/4-bit samples are unpacked to one byte each, keeping their values
     * 0..2^d-1 (no rescaling to 0..255): that is what label indices need. */
    if (bit_depth < 8) png_set_packing(ctx->png);
    png_set_interlace_handling(ctx->png);
    png_read_update_info(ctx->png, ctx->info);

    size_t rowbytes = png_get_rowbytes(ctx->png, ctx->info);
    int channels = png_get_channels(ctx->png, ctx->info);
    int depth16 = bit_depth == 16;
    if (rowbytes < (size_t)width * (size_t)channels * (depth16 ? 2u : 1u))
        return rl_error_set(err, RL_EFORMAT, "%s: unexpected PNG row size", path);
    /* deflate expands at most about 1032:1, so a file cannot hold more than
     * 1032 times its size of decoded rows: a header that claims more is a
     * truncated or hostile file, refused before the large allocation. */
    struct stat st;
    if (fstat(fileno(ctx->fp), &st) == 0 &&
        (double)height * ((double)rowbytes + 1.0) > RL_DEFLATE_MAX_RATIO * (double)st.st_size)
        return rl_error_set(err, RL_EFORMAT,
                            "%s: header claims %ux%u pixels, more than a %lld-byte file can hold "
                            "(truncated?)",
                            path, (unsigned)width, (unsigned)height, (long long)st.st_size);
    ctx->pixels = malloc(rowbytes * height);
    ctx->rows = malloc(sizeof *ctx->rows * height);
    vol->data = malloc(sizeof *vol->data * (size_t)width * height);
    if (!ctx->pixels || !ctx->rows || !vol->data)
        return rl_error_set(err, RL_ENOMEM, "%s: out of memory for a %ux%u PNG", path,
                            (unsigned)width, (unsigned)height);
    for (png_uint_32 y = 0; y < height; y++) ctx->rows[y] = ctx->pixels + rowbytes * y;
    png_read_image(ctx->png, ctx->rows);
    png_read_end(ctx->png, NULL);

    png_colorp palette = NULL;
    int palette_size = 0;
    if (is_palette && !as_labels &&
        !png_get_PLTE(ctx->png, ctx->info, &palette, &palette_size))
        return rl_error_set(err, RL_EFORMAT, "%s: palette PNG without a palette", path);

    for (png_uint_32 y = 0; y < height; y++) {
        const unsigned char *row = ctx->rows[y];
        float *out = vol->data + (size_t)y * width;
        for (png_uint_32 x = 0; x < width; x++) {
            unsigned v0 = sample(row, (int)x, channels, 0, depth16);
            if (is_color) {
                out[x] = luminance((float)v0, (float)sample(row, (int)x, channels, 1, depth16),
                                   (float)sample(row, (int)x, channels, 2, depth16));
            } else if (is_palette && !as_labels) {
                if ((int)v0 >= palette_size)
                    return rl_error_set(err, RL_EFORMAT,
                                        "%s: palette index %u outside the %d-colour palette",
                                        path, v0, palette_size);
                out[x] = luminance(palette[v0].red, palette[v0].green, palette[v0].blue);
            } else {
                out[x] = (float)v0; /* gray, gray+alpha (alpha dropped), or an index */
            }
        }
    }
    vol->nx = (int)width;
    vol->ny = (int)height;
    vol->nz = 1;
    return RL_OK;
}

static void png_ctx_free_read(png_ctx *ctx) {
    if (ctx->png) png_destroy_read_struct(&ctx->png, ctx->info ? &ctx->info : NULL, NULL);
    if (ctx->fp) fclose(ctx->fp);
    free(ctx->rows);
    free(ctx->pixels);
}

int rl_png_read(const char *path, int as_labels, rl_volume *vol, rl_error *err) {
    memset(vol, 0, sizeof *vol);
    png_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.fp = fopen(path, "rb");
    if (!ctx.fp) return rl_error_set(err, RL_EIO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char signature[8];
    if (fread(signature, 1, sizeof signature, ctx.fp) != sizeof signature ||
        png_sig_cmp(signature, 0, sizeof signature) != 0) {
        fclose(ctx.fp);
        return rl_error_set(err, RL_EFORMAT, "%s: not a PNG file (bad signature)", path);
    }
    rewind(ctx.fp);
    int rc;
    ctx.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_png_error, on_png_warning);
    ctx.info = ctx.png ? png_create_info_struct(ctx.png) : NULL;
    if (!ctx.png || !ctx.info)
        rc = rl_error_set(err, RL_ENOMEM, "%s: cannot create libpng reader", path);
    else
        rc = png_decode(&ctx, path, as_labels, vol, err);
    png_ctx_free_read(&ctx);
    if (rc) {
        free(vol->data);
        memset(vol, 0, sizeof *vol);
        return rc;
    }
    vol->spacing[0] = vol->spacing[1] = vol->spacing[2] = 1.0;
    vol->format = RL_FORMAT_PNG;
    return RL_OK;
}

/* ---- writing ------------------------------------------------------------ */

/* Gray (channels 1: uint16 values at 8 or 16 bits) or RGB (channels 3:
 * uint8 triples at 8 bits). */
static int png_encode(png_ctx *ctx, const char *path, const void *values, int nx, int ny,
                      int bit_depth, int channels, rl_error *err) {
    if (setjmp(png_jmpbuf(ctx->png)))
        return rl_error_set(err, RL_EIO, "%s: PNG write failed: %s", path, ctx->msg);
    png_init_io(ctx->png, ctx->fp);
    png_set_IHDR(ctx->png, ctx->info, (png_uint_32)nx, (png_uint_32)ny, bit_depth,
                 channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(ctx->png, ctx->info);
    if (channels == 3) {
        const uint8_t *rgb = values;
        for (int y = 0; y < ny; y++) png_write_row(ctx->png, rgb + (size_t)y * nx * 3);
        png_write_end(ctx->png, NULL);
        return RL_OK;
    }
    size_t rowbytes = (size_t)nx * (bit_depth == 16 ? 2u : 1u);
    ctx->pixels = malloc(rowbytes);
    if (!ctx->pixels) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    for (int y = 0; y < ny; y++) {
        const uint16_t *in = (const uint16_t *)values + (size_t)y * nx;
        for (int x = 0; x < nx; x++) {
            if (bit_depth == 16) {
                ctx->pixels[2 * x] = (unsigned char)(in[x] >> 8); /* PNG is big-endian */
                ctx->pixels[2 * x + 1] = (unsigned char)(in[x] & 0xff);
            } else {
                ctx->pixels[x] = (unsigned char)in[x];
            }
        }
        png_write_row(ctx->png, ctx->pixels);
    }
    png_write_end(ctx->png, NULL);
    return RL_OK;
}

/* The size check of both writers, before they read any pixel. */
static int png_check_size(const char *path, int nx, int ny, rl_error *err) {
    if (nx <= 0 || ny <= 0 || nx > RL_PNG_MAX_EDGE || ny > RL_PNG_MAX_EDGE)
        return rl_error_set(err, RL_ERANGE, "%s: %dx%d image cannot be a PNG", path, nx, ny);
    return RL_OK;
}

/* The writers' common path (size already checked): a temporary file renamed
 * when complete. */
static int png_write_file(const char *path, const void *values, int nx, int ny, int bit_depth,
                          int channels, rl_error *err) {
    rl_atomic_file file;
    int rc = rl_atomic_open(&file, path, err);
    if (rc) return rc;
    png_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.fp = file.fp;
    ctx.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, on_png_error, on_png_warning);
    ctx.info = ctx.png ? png_create_info_struct(ctx.png) : NULL;
    if (!ctx.png || !ctx.info)
        rc = rl_error_set(err, RL_ENOMEM, "%s: cannot create libpng writer", path);
    else
        rc = png_encode(&ctx, path, values, nx, ny, bit_depth, channels, err);
    if (ctx.png) png_destroy_write_struct(&ctx.png, ctx.info ? &ctx.info : NULL);
    free(ctx.pixels);
    if (rc) {
        rl_atomic_abort(&file);
        return rc;
    }
    return rl_atomic_commit(&file, err);
}

int rl_png_write_u16(const char *path, const uint16_t *values, int nx, int ny, int bit_depth,
                     rl_error *err) {
    if (bit_depth != 8 && bit_depth != 16)
        return rl_error_set(err, RL_EINVAL, "%s: PNG bit depth must be 8 or 16", path);
    int rc = png_check_size(path, nx, ny, err);
    if (rc) return rc;
    if (bit_depth == 8)
        for (size_t i = 0; i < (size_t)nx * ny; i++)
            if (values[i] > 255)
                return rl_error_set(err, RL_ERANGE, "%s: value %u does not fit 8 bits", path,
                                    values[i]);
    return png_write_file(path, values, nx, ny, bit_depth, 1, err);
}

int rl_png_write_rgb8(const char *path, const uint8_t *rgb, int nx, int ny, rl_error *err) {
    int rc = png_check_size(path, nx, ny, err);
    return rc ? rc : png_write_file(path, rgb, nx, ny, 8, 3, err);
}
