/* Source-format readers (JSRT, GIF, MetaImage) and the JSRT / RETOUCH
 * converters, on files built by the test itself. The GIF files come from a
 * small LZW encoder written here, independently of the decoder. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reflabel/convert.h"
#include "reflabel/dataset.h"
#include "reflabel/formats.h"
#include "reflabel/image.h"
#include "testutil.h"

static void write_bytes(const char *path, const void *data, size_t size) {
    rl_error err = {0, ""};
    CHECK_OK(rl_write_file_atomic(path, data, size, &err));
}

static void write_text(const char *path, const char *text) {
    write_bytes(path, text, strlen(text));
}

/* ---- JSRT ------------------------------------------------------------------ */

static uint16_t jsrt_value(int x, int y) { return (uint16_t)((x * 3 + y * 5) % 4096); }

static void write_jsrt(const char *path, int value_offset) {
    const size_t n = (size_t)RL_JSRT_EDGE * RL_JSRT_EDGE;
    unsigned char *b = malloc(2 * n);
    for (size_t i = 0; i < n; i++) {
        unsigned v = jsrt_value((int)(i % RL_JSRT_EDGE), (int)(i / RL_JSRT_EDGE)) + value_offset;
        b[2 * i] = (unsigned char)(v >> 8);
        b[2 * i + 1] = (unsigned char)(v & 255);
    }
    write_bytes(path, b, 2 * n);
    free(b);
}

static void test_jsrt(const char *dir) {
    char path[4096];
    rl_error err = {0, ""};
    rl_volume vol;
    snprintf(path, sizeof path, "%s/a.IMG", dir);
    write_jsrt(path, 0);
    CHECK_OK(rl_jsrt_read(path, &vol, &err));
    CHECK(vol.nx == 2048 && vol.ny == 2048 && vol.nz == 1);
    CHECK(vol.spacing[0] == 0.175 && vol.spacing[1] == 0.175);
    int ok = 1;
    for (int y = 0; y < 2048; y += 7)
        for (int x = 0; x < 2048; x += 5) ok &= vol.data[(size_t)y * 2048 + x] == jsrt_value(x, y);
    CHECK(ok);
    CHECK(vol.data[(size_t)2047 * 2048 + 2047] == jsrt_value(2047, 2047));
    rl_volume_free(&vol);

    /* One byte short, one byte long, and a foreign (too large) value. */
    unsigned char small[16] = {0};
    write_bytes(path, small, sizeof small);
    CHECK(rl_jsrt_read(path, &vol, &err) == RL_EFORMAT && strstr(err.msg, "exactly 8388608"));
    char *big = calloc((size_t)2048 * 2048 * 2 + 1, 1);
    write_bytes(path, big, (size_t)2048 * 2048 * 2 - 1);
    CHECK(rl_jsrt_read(path, &vol, &err) == RL_EFORMAT);
    write_bytes(path, big, (size_t)2048 * 2048 * 2 + 1);
    CHECK(rl_jsrt_read(path, &vol, &err) == RL_EFORMAT);
    free(big);
    CHECK(vol.data == NULL);
    write_jsrt(path, 10); /* pushes the largest values past 4095 */
    CHECK(rl_jsrt_read(path, &vol, &err) == RL_EFORMAT && strstr(err.msg, "12-bit"));
    CHECK(vol.data == NULL);
    snprintf(path, sizeof path, "%s/missing.IMG", dir);
    CHECK(rl_jsrt_read(path, &vol, &err) == RL_EIO);
}

/* ---- a minimal GIF encoder -------------------------------------------------- */

typedef struct gif_spec {
    const char *version; /* "GIF87a" or "GIF89a" */
    int screen_w, screen_h, background;
    int x, y, w, h;         /* the image's rectangle */
    int palette_bits;       /* table of 2^(bits+1) entries; -1 = none */
    int local_palette;      /* put the table in the image descriptor */
    const uint8_t *palette; /* RGB triples */
    int min_code_size;
    int interlace;
    int clear_when_full; /* else the table stays full ("deferred clear") */
    int extensions;      /* add a graphic control and a comment block */
} gif_spec;

typedef struct bit_writer {
    uint8_t *buf;
    size_t bits;
} bit_writer;

static void put_code(bit_writer *bw, unsigned code, unsigned size) {
    for (unsigned k = 0; k < size; k++, bw->bits++)
        if (code >> k & 1) bw->buf[bw->bits >> 3] |= (uint8_t)(1u << (bw->bits & 7));
}

/* LZW-compresses pixels (in stored row order) into buf; returns bytes. The
 * code width grows once the encoder's next free code passes 2^width, which
 * is where a decoder that adds entries one code later switches. */
static size_t lzw_encode(const uint8_t *pixels, size_t n, int min_code_size, int clear_when_full,
                         uint8_t *buf) {
    int16_t(*child)[256] = malloc(sizeof(int16_t[4096][256]));
    const unsigned clear = 1u << min_code_size;
    unsigned size = (unsigned)min_code_size + 1, next = clear + 2;
    memset(child, 0xff, sizeof(int16_t[4096][256]));
    bit_writer bw = {buf, 0};
    put_code(&bw, clear, size);
    unsigned cur = pixels[0];
    for (size_t i = 1; i < n; i++) {
        unsigned c = pixels[i];
        if (child[cur][c] >= 0) {
            cur = (unsigned)child[cur][c];
            continue;
        }
        put_code(&bw, cur, size);
        if (next < 4096) {
            child[cur][c] = (int16_t)next++;
            if (next > (1u << size) && size < 12) size++;
        } else if (clear_when_full) {
            put_code(&bw, clear, size);
            memset(child, 0xff, sizeof(int16_t[4096][256]));
            size = (unsigned)min_code_size + 1;
            next = clear + 2;
        }
        cur = c;
    }
    put_code(&bw, cur, size);
    put_code(&bw, clear + 1, size);
    free(child);
    return (bw.bits + 7) / 8;
}

static void put16(uint8_t *p, size_t *pos, unsigned v) {
    p[(*pos)++] = (uint8_t)(v & 255);
    p[(*pos)++] = (uint8_t)(v >> 8);
}

/* Encodes an image (w * h indices, row-major, top to bottom) into a malloc'ed
 * GIF; *size receives its length. */
static uint8_t *encode_gif(const gif_spec *s, const uint8_t *pixels, size_t *size) {
    size_t n = (size_t)s->w * s->h;
    uint8_t *stored = malloc(n);
    if (s->interlace) {
        static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
        size_t k = 0;
        for (int p = 0; p < 4; p++)
            for (int row = start[p]; row < s->h; row += step[p], k++)
                memcpy(stored + k * s->w, pixels + (size_t)row * s->w, (size_t)s->w);
    } else {
        memcpy(stored, pixels, n);
    }
    uint8_t *lzw = calloc(n * 2 + 64, 1);
    size_t lzw_size = lzw_encode(stored, n, s->min_code_size, s->clear_when_full, lzw);
    free(stored);
    size_t cap = 64 + 3 * 256 + 64 + lzw_size + lzw_size / 255 + 16;
    uint8_t *g = calloc(cap, 1);
    size_t pos = 0;
    memcpy(g, s->version, 6);
    pos = 6;
    put16(g, &pos, (unsigned)s->screen_w);
    put16(g, &pos, (unsigned)s->screen_h);
    int table = s->palette_bits >= 0, entries = table ? 1 << (s->palette_bits + 1) : 0;
    g[pos++] = (uint8_t)(table && !s->local_palette ? 0x80 | s->palette_bits : 0);
    g[pos++] = (uint8_t)s->background;
    g[pos++] = 0;
    if (table && !s->local_palette) {
        memcpy(g + pos, s->palette, (size_t)entries * 3);
        pos += (size_t)entries * 3;
    }
    if (s->extensions) {
        static const uint8_t gce[] = {0x21, 0xF9, 4, 0, 0, 0, 0, 0};
        static const uint8_t comment[] = {0x21, 0xFE, 5, 'h', 'e', 'l', 'l', 'o', 0};
        memcpy(g + pos, gce, sizeof gce);
        pos += sizeof gce;
        memcpy(g + pos, comment, sizeof comment);
        pos += sizeof comment;
    }
    g[pos++] = 0x2C;
    put16(g, &pos, (unsigned)s->x);
    put16(g, &pos, (unsigned)s->y);
    put16(g, &pos, (unsigned)s->w);
    put16(g, &pos, (unsigned)s->h);
    g[pos++] = (uint8_t)((table && s->local_palette ? 0x80 | s->palette_bits : 0) |
                         (s->interlace ? 0x40 : 0));
    if (table && s->local_palette) {
        memcpy(g + pos, s->palette, (size_t)entries * 3);
        pos += (size_t)entries * 3;
    }
    g[pos++] = (uint8_t)s->min_code_size;
    for (size_t off = 0; off < lzw_size; off += 255) {
        size_t len = lzw_size - off < 255 ? lzw_size - off : 255;
        g[pos++] = (uint8_t)len;
        memcpy(g + pos, lzw + off, len);
        pos += len;
    }
    g[pos++] = 0;
    g[pos++] = 0x3B;
    free(lzw);
    *size = pos;
    return g;
}

static const uint8_t bw_palette[6] = {0, 0, 0, 255, 255, 255};

static gif_spec simple_spec(int w, int h) {
    gif_spec s = {"GIF89a", w, h, 0, 0, 0, w, h, 0, 0, bw_palette, 2, 0, 1, 0};
    return s;
}

/* Decodes and compares indices over the image rectangle. */
static int roundtrip_ok(const gif_spec *s, const uint8_t *pixels) {
    size_t size;
    uint8_t *g = encode_gif(s, pixels, &size);
    rl_gif_image img;
    rl_error err = {0, ""};
    int rc = rl_gif_decode(g, size, &img, &err);
    free(g);
    if (rc) {
        fprintf(stderr, "decode failed: %s\n", err.msg);
        return 0;
    }
    int ok = img.width == s->screen_w && img.height == s->screen_h && img.frame_x == s->x &&
             img.frame_y == s->y && img.frame_w == s->w && img.frame_h == s->h;
    for (int y = 0; ok && y < s->h; y++)
        for (int x = 0; x < s->w; x++)
            ok &= img.indices[(size_t)(y + s->y) * img.width + x + s->x] ==
                  pixels[(size_t)y * s->w + x];
    rl_gif_free(&img);
    return ok;
}

static void test_gif_decode(void) {
    rl_rng rng;
    rl_rng_seed(&rng, 7, 0);
    uint8_t *pix = malloc(300 * 200);
    /* 87a, global black/white table, a small mask. */
    gif_spec s = simple_spec(7, 5);
    s.version = "GIF87a";
    for (int i = 0; i < 35; i++) pix[i] = (uint8_t)((i * 7 / 3) % 2);
    CHECK(roundtrip_ok(&s, pix));
    /* 89a with extensions and a local 4-colour table. */
    static const uint8_t pal4[12] = {255, 255, 255, 0, 0, 0, 10, 0, 0, 0, 0, 1};
    s = simple_spec(13, 11);
    s.extensions = 1;
    s.local_palette = 1;
    s.palette = pal4;
    s.palette_bits = 1;
    for (int i = 0; i < 13 * 11; i++) pix[i] = (uint8_t)rl_rng_below(&rng, 4);
    CHECK(roundtrip_ok(&s, pix));
    s.interlace = 1; /* 11 rows: every pass is partial */
    CHECK(roundtrip_ok(&s, pix));
    for (int h = 1; h <= 9; h++) { /* interlacing of tiny heights */
        gif_spec t = s;
        t.h = t.screen_h = h;
        CHECK_MSG(roundtrip_ok(&t, pix), "interlaced height %d", h);
    }
    /* Random 16-colour data fills the code table: with and without clears,
     * and codes of every width up to 12 bits. */
    uint8_t pal16[48];
    for (int i = 0; i < 48; i++) pal16[i] = (uint8_t)(i * 5);
    s = simple_spec(300, 200);
    s.palette = pal16;
    s.palette_bits = 3;
    s.min_code_size = 4;
    for (int i = 0; i < 300 * 200; i++) pix[i] = (uint8_t)rl_rng_below(&rng, 16);
    CHECK(roundtrip_ok(&s, pix));
    s.clear_when_full = 0;
    CHECK(roundtrip_ok(&s, pix));
    /* Long runs: strings much longer than one pixel. */
    for (int i = 0; i < 300 * 200; i++) pix[i] = (uint8_t)((i / 997) % 3);
    CHECK(roundtrip_ok(&s, pix));
    s.min_code_size = 8;
    CHECK(roundtrip_ok(&s, pix));
    free(pix);
}

static void test_gif_masks(void) {
    rl_error err = {0, ""};
    uint8_t pix[40];
    for (int i = 0; i < 40; i++) pix[i] = (uint8_t)(i % 3 == 0);
    /* An image at (2, 3) on a 10x8 screen: outside it is background. */
    gif_spec s = simple_spec(5, 4);
    s.screen_w = 10;
    s.screen_h = 8;
    s.x = 2;
    s.y = 3;
    s.background = 1; /* white: must still not count outside the image */
    size_t size;
    uint8_t *g = encode_gif(&s, pix, &size);
    rl_gif_image img;
    CHECK_OK(rl_gif_decode(g, size, &img, &err));
    free(g);
    uint8_t mask[80];
    rl_gif_foreground(&img, mask);
    int ok = 1;
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 10; x++) {
            int inside = x >= 2 && x < 7 && y >= 3 && y < 7;
            int want = inside ? pix[(y - 3) * 5 + x - 2] : 0;
            ok &= mask[y * 10 + x] == want;
        }
    CHECK(ok);
    rl_gif_free(&img);
    /* Colour decides, not the index: index 0 white is foreground. */
    static const uint8_t inverted[6] = {255, 255, 255, 0, 0, 0};
    s = simple_spec(5, 4);
    s.palette = inverted;
    g = encode_gif(&s, pix, &size);
    CHECK_OK(rl_gif_decode(g, size, &img, &err));
    free(g);
    rl_gif_foreground(&img, mask);
    ok = 1;
    for (int i = 0; i < 20; i++) ok &= mask[i] == !pix[i];
    CHECK(ok);
    rl_gif_free(&img);
    /* No colour table at all: index != 0. */
    s.palette_bits = -1;
    for (int i = 0; i < 20; i++) pix[i] = (uint8_t)(i % 4);
    g = encode_gif(&s, pix, &size);
    CHECK_OK(rl_gif_decode(g, size, &img, &err));
    free(g);
    CHECK(img.palette_size == 0);
    rl_gif_foreground(&img, mask);
    ok = 1;
    for (int i = 0; i < 20; i++) ok &= mask[i] == (pix[i] != 0);
    CHECK(ok);
    rl_gif_free(&img);
    /* An index beyond a 2-entry table is refused. */
    s.palette_bits = 0;
    g = encode_gif(&s, pix, &size);
    CHECK(rl_gif_decode(g, size, &img, &err) == RL_EFORMAT && strstr(err.msg, "colour table"));
    CHECK(img.indices == NULL);
    free(g);
}

static void test_gif_corrupt(const char *dir) {
    rl_error err = {0, ""};
    rl_gif_image img;
    uint8_t pix[24 * 17];
    rl_rng rng;
    rl_rng_seed(&rng, 11, 0);
    for (size_t i = 0; i < sizeof pix; i++) pix[i] = (uint8_t)rl_rng_below(&rng, 4);
    gif_spec s = simple_spec(24, 17);
    static const uint8_t pal4[12] = {0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3};
    s.palette = pal4;
    s.palette_bits = 1;
    s.extensions = 1;
    size_t size;
    uint8_t *g = encode_gif(&s, pix, &size);
    CHECK_OK(rl_gif_decode(g, size, &img, &err));
    rl_gif_free(&img);
    /* Every truncation fails cleanly, except dropping only the trailer. */
    int bad = 0;
    for (size_t n = 0; n + 1 < size; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees any overread */
        memcpy(copy, g, n);
        int rc = rl_gif_decode(copy, n, &img, &err);
        bad += rc == RL_OK || img.indices != NULL;
        rl_gif_free(&img);
        free(copy);
    }
    CHECK_MSG(bad == 0, "%d truncations decoded", bad);
    CHECK_OK(rl_gif_decode(g, size - 1, &img, &err));
    rl_gif_free(&img);
    /* Random corruption: any outcome but a crash; success means a full image. */
    uint8_t *copy = malloc(size);
    int decoded = 0;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(copy, g, size);
        int flips = 1 + (int)rl_rng_below(&rng, 4);
        for (int f = 0; f < flips; f++)
            copy[rl_rng_below(&rng, (uint32_t)size)] ^= (uint8_t)(1u << rl_rng_below(&rng, 8));
        if (rl_gif_decode(copy, size, &img, &err) == RL_OK) {
            decoded++;
            CHECK(img.indices != NULL && img.width > 0 && img.height > 0);
            rl_gif_free(&img);
        }
    }
    CHECK(decoded > 0 && decoded < 3000);
    free(copy);
    /* Specific malformations. */
    uint8_t *m = malloc(size);
    memcpy(m, g, size);
    m[3] = '9'; /* GIF97a */
    CHECK(rl_gif_decode(m, size, &img, &err) == RL_EFORMAT && strstr(err.msg, "signature"));
    memcpy(m, g, size);
    m[6] = m[7] = 0; /* zero-width screen */
    CHECK(rl_gif_decode(m, size, &img, &err) == RL_EFORMAT);
    /* Image rectangle beyond the screen: x = 1 with full width. */
    size_t desc = 13 + 12 + 8 + 9; /* header, table, two extensions */
    CHECK(g[desc] == 0x2C);
    memcpy(m, g, size);
    m[desc + 1] = 1;
    CHECK(rl_gif_decode(m, size, &img, &err) == RL_EFORMAT && strstr(err.msg, "fit"));
    memcpy(m, g, size);
    m[desc + 10] = 1; /* minimum code size 1 */
    CHECK(rl_gif_decode(m, size, &img, &err) == RL_EFORMAT && strstr(err.msg, "code size"));
    m[desc + 10] = 9;
    CHECK(rl_gif_decode(m, size, &img, &err) == RL_EFORMAT);
    memcpy(m, g, size);
    m[desc] = 0x3B; /* trailer before any image */
    CHECK(rl_gif_decode(m, size, &img, &err) == RL_EFORMAT && strstr(err.msg, "no image"));
    m[desc] = 0x99;
    CHECK(rl_gif_decode(m, size, &img, &err) == RL_EFORMAT);
    free(m);
    /* Hand-made LZW streams (code size 3 with min code size 2, LSB first):
     * clear(4), 1, then 7: beyond the next free code (6) -> invalid. */
    uint8_t bad_code[] = {'G', 'I', 'F', '8', '9', 'a', 2,   0,    1,    0, 0x80, 0,
                          0,   0,   0,   0,   255, 255, 255, 0x2C, 0,    0, 0,    0,
                          2,   0,   1,   0,   0,   2,   2,   0xCC, 0x01, 0, 0x3B};
    CHECK(rl_gif_decode(bad_code, sizeof bad_code, &img, &err) == RL_EFORMAT &&
          strstr(err.msg, "invalid LZW code"));
    /* clear(4), then 6 (a table code) as the first code. */
    bad_code[31] = 0x34;
    CHECK(rl_gif_decode(bad_code, sizeof bad_code, &img, &err) == RL_EFORMAT &&
          strstr(err.msg, "not a pixel"));
    /* clear(4), 1, 1 then EOI(5): the 2 pixels, read correctly. */
    uint8_t good[] = {'G', 'I', 'F', '8', '9', 'a', 2,   0,    1,    0, 0x80, 0,
                      0,   0,   0,   0,   255, 255, 255, 0x2C, 0,    0, 0,    0,
                      2,   0,   1,   0,   0,   2,   2,   0x4C, 0x0A, 0, 0x3B};
    CHECK_OK(rl_gif_decode(good, sizeof good, &img, &err));
    CHECK(img.indices && img.indices[0] == 1 && img.indices[1] == 1);
    rl_gif_free(&img);
    /* Through a file, the error names it. */
    char path[4096 + 16];
    snprintf(path, sizeof path, "%s/bad.gif", dir);
    write_bytes(path, g, 20);
    CHECK(rl_gif_read(path, &img, &err) == RL_EFORMAT && strstr(err.msg, "bad.gif"));
    free(g);
}

/* ---- MetaImage ------------------------------------------------------------ */

static void write_mhd(const char *dir, const char *name, const char *header, const void *raw,
                      size_t raw_size, const char *raw_name) {
    char path[4096 + 256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (raw_name) {
        write_text(path, header);
        snprintf(path, sizeof path, "%s/%s", dir, raw_name);
        write_bytes(path, raw, raw_size);
    } else { /* LOCAL: data right after the header text */
        size_t h = strlen(header);
        char *all = malloc(h + raw_size);
        memcpy(all, header, h);
        memcpy(all + h, raw, raw_size);
        write_bytes(path, all, h + raw_size);
        free(all);
    }
}

static int read_mhd(const char *dir, const char *name, rl_volume *vol, rl_error *err) {
    char path[4096 + 256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return rl_metaimage_read(path, vol, err);
}

static void test_metaimage(const char *base) {
    char dir[4096 + 16];
    snprintf(dir, sizeof dir, "%s/mhd", base);
    rl_error err = {0, ""};
    CHECK_OK(rl_make_dirs(dir, &err));
    rl_volume v;
    /* 3D unsigned short, little-endian, 4x3x2 with spacing. */
    uint8_t raw[4 * 3 * 2 * 8 + 64];
    for (int i = 0; i < 24; i++) {
        raw[2 * i] = (uint8_t)(i * 37 & 255);
        raw[2 * i + 1] = (uint8_t)(i * 11);
    }
    write_mhd(dir, "us.mhd",
              "ObjectType = Image\r\nNDims = 3\r\nBinaryData = True\r\n"
              "BinaryDataByteOrderMSB = False\r\nCompressedData = False\r\n"
              "TransformMatrix = 1 0 0 0 1 0 0 0 1\r\nOffset = 0 -1.5 2\r\n"
              "ElementSpacing = 0.5 0.25 2\r\nDimSize = 4 3 2\r\nAnatomicalOrientation = RAI\r\n"
              "ElementType = MET_USHORT\r\nElementDataFile = us.raw\r\n",
              raw, 48, "us.raw");
    CHECK_OK(read_mhd(dir, "us.mhd", &v, &err));
    CHECK(v.nx == 4 && v.ny == 3 && v.nz == 2);
    CHECK(v.spacing[0] == 0.5 && v.spacing[1] == 0.25 && v.spacing[2] == 2.0);
    int ok = v.data != NULL;
    for (int i = 0; ok && i < 24; i++) ok &= v.data[i] == (float)((i * 37 & 255) | (i * 11) << 8);
    CHECK(ok);
    rl_volume_free(&v);
    /* Big-endian signed short. */
    write_mhd(dir, "s.mhd",
              "NDims = 2\nDimSize = 2 2\nElementType = MET_SHORT\n"
              "ElementByteOrderMSB = True\nElementDataFile = s.raw\n",
              (const uint8_t[]){0xFF, 0xFE, 0x01, 0x02, 0x80, 0x00, 0x7F, 0xFF}, 8, "s.raw");
    CHECK_OK(read_mhd(dir, "s.mhd", &v, &err));
    CHECK(v.nx == 2 && v.ny == 2 && v.nz == 1 && v.spacing[0] == 1.0);
    CHECK(v.data && v.data[0] == -2 && v.data[1] == 258 && v.data[2] == -32768 &&
          v.data[3] == 32767);
    rl_volume_free(&v);
    /* LOCAL float data, 1D-ish 3x1, with ElementSize as the spacing. */
    float f[3] = {1.5f, -2.25f, 1e6f};
    write_mhd(dir, "f.mha",
              "ObjectType = Image\nNDims = 2\nDimSize = 3 1\nElementSize = 2 3\n"
              "ElementType = MET_FLOAT\nElementDataFile = LOCAL\n",
              f, sizeof f, NULL);
    CHECK_OK(read_mhd(dir, "f.mha", &v, &err));
    CHECK(v.nx == 3 && v.data && v.data[0] == 1.5f && v.data[1] == -2.25f && v.data[2] == 1e6f);
    CHECK(v.spacing[0] == 2.0 && v.spacing[1] == 3.0);
    rl_volume_free(&v);
    /* HeaderSize: skip 5 bytes of the data file; signed char. */
    write_mhd(dir, "c.mhd",
              "NDims = 1\nDimSize = 3\nElementType = MET_CHAR\nHeaderSize = 5\n"
              "ElementDataFile = c.raw\n",
              (const uint8_t[]){9, 9, 9, 9, 9, 0xFF, 0x05, 0x80}, 8, "c.raw");
    CHECK_OK(read_mhd(dir, "c.mhd", &v, &err));
    CHECK(v.nx == 3 && v.data && v.data[0] == -1 && v.data[1] == 5 && v.data[2] == -128);
    rl_volume_free(&v);
    /* HeaderSize = -1: the data is the end of the file; double, MSB. */
    uint8_t d[3 + 16];
    double d0 = 0.125, d1 = -3;
    uint64_t b0, b1;
    memcpy(&b0, &d0, 8);
    memcpy(&b1, &d1, 8);
    for (int i = 0; i < 8; i++) {
        d[3 + i] = (uint8_t)(b0 >> (56 - 8 * i));
        d[11 + i] = (uint8_t)(b1 >> (56 - 8 * i));
    }
    write_mhd(dir, "d.mhd",
              "NDims = 2\nDimSize = 1 2\nElementType = MET_DOUBLE\nHeaderSize = -1\n"
              "BinaryDataByteOrderMSB = True\nElementDataFile = d.raw\n",
              d, sizeof d, "d.raw");
    CHECK_OK(read_mhd(dir, "d.mhd", &v, &err));
    CHECK(v.data && v.data[0] == 0.125f && v.data[1] == -3.0f);
    rl_volume_free(&v);
    /* MET_UINT and MET_INT */
    write_mhd(dir, "i.mhd",
              "NDims = 1\nDimSize = 2\nElementType = MET_INT\nElementDataFile = i.raw\n",
              (const uint8_t[]){0xFE, 0xFF, 0xFF, 0xFF, 0x40, 0x42, 0x0F, 0x00}, 8, "i.raw");
    CHECK_OK(read_mhd(dir, "i.mhd", &v, &err));
    CHECK(v.data && v.data[0] == -2 && v.data[1] == 1000000);
    rl_volume_free(&v);

    /* ---- refusals ---- */
    struct {
        const char *header;
        int code;
        const char *needle;
    } bad[] = {
        {"NDims = 2\nDimSize = 2 2\nElementType = MET_UCHAR\nElementDataFile = b.raw\n", RL_EFORMAT,
         "holds 5 bytes"}, /* b.raw has 5 bytes, 4 needed */
        {"NDims = 2\nDimSize = 2 3\nElementType = MET_UCHAR\nElementDataFile = b.raw\n", RL_EFORMAT,
         "holds 5 bytes"},
        {"NDims = 1\nDimSize = 5\nElementType = MET_UCHAR\nElementDataFile = ../mhd/b.raw\n",
         RL_EFORMAT, "leaves"},
        {"NDims = 1\nDimSize = 5\nElementType = MET_UCHAR\nElementDataFile = /etc/hostname\n",
         RL_EFORMAT, "absolute"},
        {"NDims = 1\nDimSize = 5\nElementType = MET_UCHAR\nElementDataFile = out.raw\n", RL_EFORMAT,
         "outside"}, /* a symbolic link out of the folder */
        {"NDims = 1\nDimSize = 5\nElementType = MET_UCHAR\nElementDataFile = none.raw\n", RL_EIO,
         "none.raw"},
        {"NDims = 1\nDimSize = 5\nElementType = MET_FOO\nElementDataFile = b.raw\n",
         RL_EUNSUPPORTED, "MET_FOO"},
        {"NDims = 4\nDimSize = 5 1 1 1\nElementType = MET_UCHAR\nElementDataFile = b.raw\n",
         RL_EFORMAT, "NDims"},
        {"NDims = 1\nDimSize = 5\nElementType = MET_UCHAR\n", RL_EFORMAT,
         "without ElementDataFile"},
        {"NDims = 1\nDimSize = 5\nElementType = MET_UCHAR\nCompressedData = True\n"
         "ElementDataFile = b.raw\n",
         RL_EUNSUPPORTED, "compressed"},
        {"NDims = 2\nDimSize = 5 1\nTransformMatrix = 1 0 0\nElementType = MET_UCHAR\n"
         "ElementDataFile = b.raw\n",
         RL_EFORMAT, "TransformMatrix"},
        {"NDims = 1\nDimSize = 0\nElementType = MET_UCHAR\nElementDataFile = b.raw\n", RL_EFORMAT,
         "DimSize"},
        {"NDims = 3\nDimSize = 2000 2000 2000\nElementType = MET_UCHAR\nElementDataFile = b.raw\n",
         RL_ERANGE, "2^31"},
        {"NDims = 1\nDimSize = 5\nElementSpacing = 0\nElementType = MET_UCHAR\n"
         "ElementDataFile = b.raw\n",
         RL_EFORMAT, "positive"},
        {"NDims = 1\nNDims = 1\nDimSize = 5\nElementType = MET_UCHAR\nElementDataFile = b.raw\n",
         RL_EFORMAT, "repeats"},
        {"DimSize = 5\nNDims = 1\nElementType = MET_UCHAR\nElementDataFile = b.raw\n", RL_EFORMAT,
         "before NDims"},
        {"NDims = 1\nDimSize = 5\nElementType = MET_UCHAR\nthis line is junk\n", RL_EFORMAT,
         "Key = Value"},
        {"NDims = 1\nDimSize = 5\nElementType = MET_UCHAR\nElementNumberOfChannels = 3\n"
         "ElementDataFile = b.raw\n",
         RL_EUNSUPPORTED, "channel"},
        {"NDims = 1\nDimSize = 5\nElementType = MET_UCHAR\nHeaderSize = 2\nElementDataFile = "
         "b.raw\n",
         RL_EFORMAT, "holds 5 bytes"},
        {"NDims = 1\nDimSize = 6\nElementType = MET_UCHAR\nHeaderSize = -1\nElementDataFile = "
         "b.raw\n",
         RL_EFORMAT, "fewer"},
        {"ObjectType = Mesh\nNDims = 1\nDimSize = 5\nElementType = MET_UCHAR\n"
         "ElementDataFile = b.raw\n",
         RL_EFORMAT, "ObjectType"},
    };
    char path[4096 + 64], target[4096 + 64];
    snprintf(path, sizeof path, "%s/b.raw", dir);
    write_bytes(path, "abcde", 5);
    snprintf(target, sizeof target, "%s/outside.raw", base);
    write_bytes(target, "abcde", 5);
    snprintf(path, sizeof path, "%s/out.raw", dir);
    unlink(path);
    CHECK(symlink(target, path) == 0);
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        snprintf(path, sizeof path, "%s/bad.mhd", dir);
        write_text(path, bad[k].header);
        memset(&err, 0, sizeof err);
        int rc = rl_metaimage_read(path, &v, &err);
        CHECK_MSG(rc == bad[k].code && strstr(err.msg, bad[k].needle) && v.data == NULL,
                  "case %zu: rc %d, message '%s'", k, rc, err.msg);
    }
    /* Non-finite floats and LOCAL data of the wrong length. */
    float nan_data[2] = {1.0f, NAN};
    write_mhd(dir, "nan.mha",
              "NDims = 1\nDimSize = 2\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n",
              nan_data, sizeof nan_data, NULL);
    CHECK(read_mhd(dir, "nan.mha", &v, &err) == RL_ENONFINITE && v.data == NULL);
    write_mhd(dir, "short.mha",
              "NDims = 1\nDimSize = 3\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n",
              nan_data, sizeof nan_data, NULL);
    CHECK(read_mhd(dir, "short.mha", &v, &err) == RL_EFORMAT);
    CHECK(read_mhd(dir, "absent.mhd", &v, &err) == RL_EIO);
}

/* ---- converters ------------------------------------------------------------ */

/* SCR-like 1024x1024 mask of a rectangle, written as a GIF. */
static void write_mask(const char *path, int x0, int y0, int x1, int y1) {
    uint8_t *pix = calloc(1024 * 1024, 1);
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) pix[(size_t)y * 1024 + x] = 1;
    gif_spec s = simple_spec(1024, 1024);
    size_t size;
    uint8_t *g = encode_gif(&s, pix, &size);
    write_bytes(path, g, size);
    free(g);
    free(pix);
}

static int file_contains(const char *path, const char *needle) {
    char *text = NULL;
    size_t size = 0;
    if (rl_read_file(path, 1 << 20, &text, &size, NULL)) return 0;
    int found = strstr(text, needle) != NULL;
    free(text);
    return found;
}

static void test_convert_jsrt(const char *base) {
    char images[4096 + 32], masks[4096 + 32], out[4096 + 32], path[4096 + 512];
    rl_error err = {0, ""};
    snprintf(images, sizeof images, "%s/All247images", base);
    snprintf(masks, sizeof masks, "%s/scr/masks", base);
    snprintf(out, sizeof out, "%s/jsrt_out", base);
    CHECK_OK(rl_make_dirs(images, &err));
    snprintf(path, sizeof path, "%s/JPCLN001.IMG", images);
    write_jsrt(path, 0);
    snprintf(path, sizeof path, "%s/JPCNN002.IMG", images);
    write_jsrt(path, 0);
    /* Rectangles (x0, y0, x1, y1) on the 1024 grid; the left clavicle
     * overlaps the left lung (rows 100..119, columns 100..199). */
    const int rect[5][4] = {{100, 100, 400, 600},
                            {600, 100, 900, 600},
                            {350, 500, 650, 800},
                            {50, 80, 200, 120},
                            {700, 80, 950, 120}};
    for (int s = 0; s < RL_JSRT_NUM_STRUCTURES; s++) {
        snprintf(path, sizeof path, "%s/%s", masks, rl_jsrt_structures[s]);
        CHECK_OK(rl_make_dirs(path, &err));
        snprintf(path, sizeof path, "%s/%s/JPCLN001.gif", masks, rl_jsrt_structures[s]);
        write_mask(path, rect[s][0], rect[s][1], rect[s][2], rect[s][3]);
    }
    rl_convert_summary sum;
    CHECK_OK(rl_convert_jsrt(images, masks, out, 1024, 0, &sum, &err));
    CHECK(sum.num_labeled == 1 && sum.num_unlabeled == 1);
    rl_dataset ds;
    CHECK_OK(rl_dataset_open(out, &ds, &err));
    CHECK(ds.num_train == 2 && ds.num_train_labeled == 1 && ds.num_classes == 6);
    CHECK(ds.num_classes == 6 && !strcmp(ds.class_names[4], "left clavicle"));
    snprintf(path, sizeof path, "%s/dataset.json", out);
    CHECK(file_contains(path, "\"reflabel_multilabel\":\ttrue"));
    if (ds.num_train == 2) {
        CHECK(!strcmp(ds.train[0].id, "JPCLN001") && ds.train[0].label_path);
        rl_volume img = {0}, lab = {0};
        /* Multi-label values exceed the class count, so the label map is
         * read directly rather than through rl_dataset_load_case. */
        CHECK_OK(rl_volume_read(ds.train[0].image_paths[0], &img, &err));
        CHECK_OK(rl_volume_read_labels(ds.train[0].label_path, &lab, &err));
        CHECK(img.nx == 1024 && img.ny == 1024 && fabs(img.spacing[0] - 0.35) < 1e-6);
        CHECK(lab.nx == 1024 && lab.ny == 1024);
        if (img.data && lab.data) {
            /* 2x2 block mean of the 2048 image. */
            int x = 321, y = 123;
            float want = 0.25f * (jsrt_value(2 * x, 2 * y) + jsrt_value(2 * x + 1, 2 * y) +
                                  jsrt_value(2 * x, 2 * y + 1) + jsrt_value(2 * x + 1, 2 * y + 1));
            CHECK(img.data[(size_t)y * 1024 + x] == want);
            CHECK(lab.data[110 * 1024 + 150] == (1 | 8)); /* left lung + left clavicle */
            CHECK(lab.data[300 * 1024 + 150] == 1);
            CHECK(lab.data[550 * 1024 + 380] == (1 | 4)); /* left lung + heart */
            CHECK(lab.data[100 * 1024 + 800] == (2 | 16));
            CHECK(lab.data[0] == 0 && lab.data[1023 * 1024 + 1023] == 0);
        }
        rl_volume_free(&img);
        rl_volume_free(&lab);
        CHECK(ds.train[1].label_path == NULL);
    }
    rl_dataset_free(&ds);
    /* A second run into the same folder needs force; 2048 upsamples the masks. */
    CHECK(rl_convert_jsrt(images, masks, out, 1024, 0, &sum, &err) == RL_EINVAL);
    snprintf(path, sizeof path, "%s/JPCNN002.IMG", images);
    unlink(path);
    CHECK_OK(rl_convert_jsrt(images, masks, out, 2048, 1, &sum, &err));
    CHECK(sum.num_labeled == 1 && sum.num_unlabeled == 0);
    snprintf(path, sizeof path, "%s/labelsTr/JPCLN001.nii.gz", out);
    rl_volume lab = {0};
    CHECK_OK(rl_volume_read_labels(path, &lab, &err));
    CHECK(lab.nx == 2048 && fabs(lab.spacing[0] - 0.175) < 1e-6);
    if (lab.data) {
        CHECK(lab.data[(size_t)200 * 2048 + 200] == (1 | 8) &&
              lab.data[(size_t)201 * 2048 + 201] == (1 | 8));
        /* The clavicle's corner at mask (50, 80) starts exactly at (100, 160). */
        CHECK(lab.data[(size_t)160 * 2048 + 100] == 8 && lab.data[(size_t)159 * 2048 + 100] == 0 &&
              lab.data[(size_t)160 * 2048 + 99] == 0);
    }
    rl_volume_free(&lab);
    /* A case with some but not all masks is an error. */
    snprintf(path, sizeof path, "%s/heart/JPCLN001.gif", masks);
    unlink(path);
    CHECK(rl_convert_jsrt(images, masks, out, 1024, 1, &sum, &err) == RL_EFORMAT &&
          strstr(err.msg, "only 4 of the 5"));
    CHECK(rl_convert_jsrt(images, base, out, 1024, 1, &sum, &err) == RL_EIO &&
          strstr(err.msg, "left lung"));
}

static void write_retouch_case(const char *root, const char *vendor, const char *name, int nx,
                               int ny, int nz, int label_max) {
    char dir[4096 + 256], path[4096 + 512], header[512];
    snprintf(dir, sizeof dir, "%s/%s/%s", root, vendor, name);
    rl_error err = {0, ""};
    CHECK_OK(rl_make_dirs(dir, &err));
    size_t n = (size_t)nx * ny * nz;
    uint16_t *oct = malloc(n * 2);
    uint8_t *ref = malloc(n);
    for (size_t i = 0; i < n; i++) {
        oct[i] = (uint16_t)(i * 7 % 1000);
        ref[i] = label_max >= 0 ? (uint8_t)(i % (size_t)(label_max + 1)) : 0;
    }
    snprintf(header, sizeof header,
             "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
             "ElementSpacing = 0.01 0.0039 0.047\nDimSize = %d %d %d\n"
             "ElementType = MET_USHORT\nElementDataFile = oct.raw\n",
             nx, ny, nz);
    snprintf(path, sizeof path, "%s/oct.mhd", dir);
    write_text(path, header);
    snprintf(path, sizeof path, "%s/oct.raw", dir);
    write_bytes(path, oct, n * 2); /* little-endian host assumed by the test */
    if (label_max >= 0) {
        snprintf(header, sizeof header,
                 "ObjectType = Image\nNDims = 3\nDimSize = %d %d %d\n"
                 "ElementType = MET_UCHAR\nElementDataFile = reference.raw\n",
                 nx, ny, nz);
        snprintf(path, sizeof path, "%s/reference.mhd", dir);
        write_text(path, header);
        snprintf(path, sizeof path, "%s/reference.raw", dir);
        write_bytes(path, ref, n);
    }
    free(oct);
    free(ref);
}

static void test_convert_retouch(const char *base) {
    char in[4096 + 32], out[4096 + 32];
    rl_error err = {0, ""};
    snprintf(in, sizeof in, "%s/TrainingSet-Release", base);
    snprintf(out, sizeof out, "%s/retouch_out", base);
    write_retouch_case(in, "Cirrus", "TRAIN001", 8, 6, 3, 3);
    write_retouch_case(in, "Topcon", "TRAIN002", 5, 4, 2, -1);
    rl_convert_summary sum;
    CHECK_OK(rl_convert_retouch(in, out, 0, &sum, &err));
    CHECK(sum.num_labeled == 1 && sum.num_unlabeled == 1);
    rl_dataset ds;
    CHECK_OK(rl_dataset_open(out, &ds, &err));
    CHECK(ds.num_train == 2 && ds.num_train_labeled == 1 && ds.num_classes == 4);
    CHECK(ds.num_classes == 4 && !strcmp(ds.class_names[2], "SRF"));
    if (ds.num_train == 2) {
        CHECK(!strcmp(ds.train[0].id, "cirrus_train001") &&
              !strcmp(ds.train[1].id, "topcon_train002"));
        rl_volume img, lab;
        CHECK_OK(rl_dataset_load_case(&ds, &ds.train[0], &img, &lab, &err));
        CHECK(img.nx == 8 && img.ny == 6 && img.nz == 3 && fabs(img.spacing[1] - 0.0039) < 1e-7);
        int ok = img.data && lab.data;
        for (size_t i = 0; ok && i < 8 * 6 * 3; i++)
            ok &= img.data[i] == (float)(i * 7 % 1000) && lab.data[i] == (float)(i % 4);
        CHECK(ok);
        rl_dataset_free_case(&ds, &img, &lab);
    }
    rl_dataset_free(&ds);
    /* A reference value outside 0..3 is refused. */
    write_retouch_case(in, "Spectralis", "TRAIN003", 4, 4, 1, 5);
    CHECK(rl_convert_retouch(in, out, 1, &sum, &err) == RL_EFORMAT && strstr(err.msg, "0..3"));
    CHECK(rl_convert_retouch(base, out, 1, &sum, &err) == RL_EIO && strstr(err.msg, "no RETOUCH"));
}

int main(void) {
    const char *tmp = rl_test_tmpdir("formats");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tmp);
    test_jsrt(dir);
    test_gif_decode();
    test_gif_masks();
    test_gif_corrupt(dir);
    test_metaimage(dir);
    test_convert_jsrt(dir);
    test_convert_retouch(dir);
    return rl_test_report("test_formats");
}
