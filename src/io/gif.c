/* A small GIF (87a/89a) decoder for binary masks: first image only, LZW,
 * interlacing, global/local colour tables. Every read is bounds-checked
 * against the input size, every table access against the table size, and
 * every output write against the image size: the decoder is meant to survive
 * arbitrary bytes. */
#include <stdlib.h>
#include <string.h>

#include "reflabel/formats.h"

/* A GIF file is never meant to be large; this bounds what rl_gif_read loads. */
#define GIF_FILE_MAX_BYTES ((size_t)1 << 28)
#define LZW_MAX_CODES 4096

typedef struct byte_reader {
    const uint8_t *data;
    size_t size, pos;
} byte_reader;

static int read_u8(byte_reader *r, unsigned *out) {
    if (r->pos >= r->size) return -1;
    *out = r->data[r->pos++];
    return 0;
}

static int read_u16le(byte_reader *r, unsigned *out) {
    if (r->pos > r->size || r->size - r->pos < 2) return -1;
    *out = (unsigned)r->data[r->pos] | (unsigned)r->data[r->pos + 1] << 8;
    r->pos += 2;
    return 0;
}

/* Reads a colour table of 2^(bits+1) entries. */
static int read_palette(byte_reader *r, unsigned bits, rl_gif_image *img) {
    size_t entries = (size_t)1 << (bits + 1);
    if (r->size - r->pos < entries * 3) return -1;
    memcpy(img->palette, r->data + r->pos, entries * 3);
    img->palette_size = (int)entries;
    r->pos += entries * 3;
    return 0;
}

/* Skips a chain of data sub-blocks (length byte, data, ..., 0). */
static int skip_sub_blocks(byte_reader *r) {
    for (;;) {
        unsigned len;
        if (read_u8(r, &len)) return -1;
        if (len == 0) return 0;
        if (r->size - r->pos < len) return -1;
        r->pos += len;
    }
}

/* Concatenates the image's data sub-blocks into one malloc'ed buffer. */
static int gather_sub_blocks(byte_reader *r, uint8_t **out, size_t *out_size) {
    size_t start = r->pos, total = 0;
    if (skip_sub_blocks(r)) return -1; /* first pass: validate and measure */
    byte_reader again = {r->data, r->size, start};
    uint8_t *buf = malloc(r->pos - start + 1); /* at least the payload size */
    if (!buf) return -2;
    for (;;) {
        unsigned len = 0;
        if (read_u8(&again, &len) || len == 0) break; /* validated above: ends at the 0 */
        memcpy(buf + total, again.data + again.pos, len);
        total += len;
        again.pos += len;
    }
    *out = buf;
    *out_size = total;
    return 0;
}

/* LZW decoder state: the string for code c is the string for prefix[c]
 * followed by suffix[c]; first[c] is its first byte, length[c] its length. */
typedef struct lzw_table {
    uint16_t prefix[LZW_MAX_CODES];
    uint8_t suffix[LZW_MAX_CODES];
    uint8_t first[LZW_MAX_CODES];
    uint16_t length[LZW_MAX_CODES];
} lzw_table;

/* Writes the string of `code` at out[pos..], clipped to out_size. */
static void emit_string(const lzw_table *t, unsigned code, uint8_t *out, size_t pos,
                        size_t out_size) {
    size_t end = pos + t->length[code];
    for (size_t i = end; i-- > pos;) {
        if (i < out_size) out[i] = t->suffix[code];
        code = t->prefix[code];
    }
}

/* Decodes LZW data into out (out_size pixels). Returns 0 or an error text. */
static const char *lzw_decode(const uint8_t *data, size_t size, unsigned min_code_size,
                              uint8_t *out, size_t out_size) {
    if (min_code_size < 2 || min_code_size > 8) return "LZW minimum code size outside 2..8";
    lzw_table *t = malloc(sizeof *t);
    if (!t) return "out of memory";
    const unsigned clear = 1u << min_code_size, end_code = clear + 1;
    for (unsigned c = 0; c < clear; c++) {
        t->prefix[c] = 0;
        t->suffix[c] = t->first[c] = (uint8_t)c;
        t->length[c] = 1;
    }
    unsigned code_size = min_code_size + 1, next = clear + 2;
    int prev = -1;
    size_t pos = 0, bit = 0;
    const size_t total_bits = size * 8;
    const char *error = NULL;
    while (pos < out_size) {
        if (total_bits - bit < code_size) break; /* data ended without EOI */
        unsigned code = 0;
        for (unsigned k = 0; k < code_size; k++, bit++)
            code |= (unsigned)(data[bit >> 3] >> (bit & 7) & 1u) << k;
        if (code == clear) {
            code_size = min_code_size + 1;
            next = clear + 2;
            prev = -1;
            continue;
        }
        if (code == end_code) break;
        if (prev < 0) {
            if (code >= clear) {
                error = "LZW data starts with a code that is not a pixel";
                break;
            }
            emit_string(t, code, out, pos, out_size);
            pos += 1;
            prev = (int)code;
            continue;
        }
        if (code > next || (code == next && next >= LZW_MAX_CODES)) {
            error = "invalid LZW code";
            break;
        }
        /* code == next is the "KwKwK" case: the string of prev plus its own
         * first byte, not yet in the table. */
        uint8_t first = code < next ? t->first[code] : t->first[prev];
        if (next < LZW_MAX_CODES) {
            t->prefix[next] = (uint16_t)prev;
            t->suffix[next] = first;
            t->first[next] = t->first[prev];
            t->length[next] = (uint16_t)(t->length[prev] + 1);
            next++;
            if (next == (1u << code_size) && code_size < 12) code_size++;
        }
        emit_string(t, code, out, pos, out_size);
        pos += t->length[code];
        prev = (int)code;
    }
    free(t);
    if (!error && pos < out_size) error = "image data is truncated";
    return error;
}

/* Row of the n-th decoded line of an interlaced image of height h: passes
 * start at rows 0, 4, 2, 1 with steps 8, 8, 4, 2. */
static int interlaced_row(int n, int h) {
    static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
    for (int p = 0; p < 4; p++) {
        int rows = start[p] < h ? (h - start[p] + step[p] - 1) / step[p] : 0;
        if (n < rows) return start[p] + n * step[p];
        n -= rows;
    }
    return -1; /* unreachable for n < h */
}

static int gif_fail(rl_gif_image *img, rl_error *err, int code, const char *what) {
    rl_gif_free(img);
    return rl_error_set(err, code, "%s", what);
}

int rl_gif_decode(const uint8_t *data, size_t size, rl_gif_image *img, rl_error *err) {
    memset(img, 0, sizeof *img);
    byte_reader r = {data, size, 0};
    if (size < 13 || (memcmp(data, "GIF87a", 6) != 0 && memcmp(data, "GIF89a", 6) != 0))
        return gif_fail(img, err, RL_EFORMAT, "not a GIF file (no GIF87a/GIF89a signature)");
    r.pos = 6;
    /* The 13-byte header was checked above, so these reads cannot fail. */
    unsigned sw = 0, sh = 0, flags = 0, background = 0, aspect = 0;
    read_u16le(&r, &sw);
    read_u16le(&r, &sh);
    read_u8(&r, &flags);
    read_u8(&r, &background);
    read_u8(&r, &aspect);
    if (sw == 0 || sh == 0) return gif_fail(img, err, RL_EFORMAT, "GIF screen of zero size");
    if ((int64_t)sw * sh > RL_GIF_MAX_PIXELS)
        return gif_fail(img, err, RL_ERANGE, "GIF larger than 64 Mpixel");
    rl_gif_image global = {0};
    if ((flags & 0x80) && read_palette(&r, flags & 7, &global))
        return gif_fail(img, err, RL_EFORMAT, "GIF global colour table is truncated");
    img->width = (int)sw;
    img->height = (int)sh;
    for (;;) {
        unsigned block;
        if (read_u8(&r, &block)) return gif_fail(img, err, RL_EFORMAT, "GIF ends before an image");
        if (block == 0x21) { /* extension: label, then sub-blocks */
            unsigned label;
            if (read_u8(&r, &label) || skip_sub_blocks(&r))
                return gif_fail(img, err, RL_EFORMAT, "GIF extension block is truncated");
            continue;
        }
        if (block == 0x3B) return gif_fail(img, err, RL_EFORMAT, "GIF holds no image");
        if (block != 0x2C) return gif_fail(img, err, RL_EFORMAT, "GIF has an unknown block type");
        break;
    }
    unsigned fx, fy, fw, fh, fflags, min_code_size;
    if (read_u16le(&r, &fx) || read_u16le(&r, &fy) || read_u16le(&r, &fw) || read_u16le(&r, &fh) ||
        read_u8(&r, &fflags))
        return gif_fail(img, err, RL_EFORMAT, "GIF image descriptor is truncated");
    if (fw == 0 || fh == 0 || fx + fw > sw || fy + fh > sh)
        return gif_fail(img, err, RL_EFORMAT, "GIF image does not fit on its screen");
    if (fflags & 0x80) {
        if (read_palette(&r, fflags & 7, img))
            return gif_fail(img, err, RL_EFORMAT, "GIF local colour table is truncated");
    } else {
        img->palette_size = global.palette_size;
        memcpy(img->palette, global.palette, sizeof img->palette);
    }
    if (read_u8(&r, &min_code_size))
        return gif_fail(img, err, RL_EFORMAT, "GIF image data is truncated");
    uint8_t *lzw = NULL;
    size_t lzw_size = 0;
    int gather = gather_sub_blocks(&r, &lzw, &lzw_size);
    if (gather)
        return gif_fail(img, err, gather == -2 ? RL_ENOMEM : RL_EFORMAT,
                        gather == -2 ? "out of memory" : "GIF image data is truncated");
    size_t frame_pixels = (size_t)fw * fh;
    uint8_t *frame = malloc(frame_pixels);
    img->indices = malloc((size_t)sw * sh);
    if (!frame || !img->indices) {
        free(lzw);
        free(frame);
        return gif_fail(img, err, RL_ENOMEM, "out of memory");
    }
    const char *problem = lzw_decode(lzw, lzw_size, min_code_size, frame, frame_pixels);
    free(lzw);
    if (problem) {
        free(frame);
        return gif_fail(img, err, RL_EFORMAT, problem);
    }
    if (img->palette_size > 0)
        for (size_t i = 0; i < frame_pixels; i++)
            if (frame[i] >= img->palette_size) {
                free(frame);
                return gif_fail(img, err, RL_EFORMAT, "GIF pixel index beyond its colour table");
            }
    memset(img->indices, (int)background, (size_t)sw * sh);
    for (unsigned n = 0; n < fh; n++) {
        int row = (fflags & 0x40) ? interlaced_row((int)n, (int)fh) : (int)n;
        memcpy(img->indices + (size_t)(fy + row) * sw + fx, frame + (size_t)n * fw, fw);
    }
    free(frame);
    img->frame_x = (int)fx;
    img->frame_y = (int)fy;
    img->frame_w = (int)fw;
    img->frame_h = (int)fh;
    return RL_OK;
}

int rl_gif_read(const char *path, rl_gif_image *img, rl_error *err) {
    memset(img, 0, sizeof *img);
    char *data = NULL;
    size_t size = 0;
    int rc = rl_read_file(path, GIF_FILE_MAX_BYTES, &data, &size, err);
    if (rc) return rc;
    rc = rl_gif_decode((const uint8_t *)data, size, img, err);
    free(data);
    if (rc) rl_error_prefix(err, "%s", path);
    return rc;
}

void rl_gif_free(rl_gif_image *img) {
    free(img->indices);
    memset(img, 0, sizeof *img);
}

void rl_gif_foreground(const rl_gif_image *img, uint8_t *mask) {
    memset(mask, 0, (size_t)img->width * img->height);
    for (int y = img->frame_y; y < img->frame_y + img->frame_h; y++)
        for (int x = img->frame_x; x < img->frame_x + img->frame_w; x++) {
            size_t i = (size_t)y * img->width + x;
            unsigned index = img->indices[i];
            if (img->palette_size == 0) mask[i] = index != 0;
            else {
                const uint8_t *rgb = img->palette[index];
                mask[i] = (rgb[0] | rgb[1] | rgb[2]) != 0;
            }
        }
}
