/* reflabel/formats.h - readers for the source formats of the paper's
 * datasets: JSRT chest radiographs (headerless 12-bit big-endian), the SCR
 * masks for JSRT (GIF), and RETOUCH OCT volumes (ITK MetaImage .mhd/.raw).
 * All of them validate their input strictly and return one-line errors
 * naming the file; none of them prints. See docs/DATA.md. */
#ifndef REFLABEL_FORMATS_H
#define REFLABEL_FORMATS_H

#include <stddef.h>
#include <stdint.h>

#include "reflabel/core.h"
#include "reflabel/image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- JSRT --------------------------------------------------------------- *
 * A JSRT .IMG file is exactly 2048 x 2048 pixels of 0.175 mm, each a 12-bit
 * value in a big-endian 16-bit word, rows top to bottom, no header. Anything
 * but exactly 2048 * 2048 * 2 bytes, or a value above 4095 (the sign of a
 * little-endian or otherwise foreign file), is refused. The volume is
 * 2048 x 2048 x 1 with spacing (0.175, 0.175, 1) mm and the stored values. */
#define RL_JSRT_EDGE 2048
#define RL_JSRT_SPACING_MM 0.175
int rl_jsrt_read(const char *path, rl_volume *vol, rl_error *err);

/* ---- GIF (87a and 89a) -------------------------------------------------- *
 * Only the first image of the file is decoded (SCR masks have one).
 * Interlaced images and local or global colour tables are supported;
 * animation, disposal and transparency are not interpreted. The canvas is the
 * logical screen; pixels the first image does not cover keep the screen's
 * background index and are never foreground. Corrupt or truncated data is
 * an error (never a crash); extra pixels after the image is complete and a
 * missing end-of-information code are tolerated, as in common decoders. */
#define RL_GIF_MAX_PIXELS ((int64_t)1 << 26) /* 64 Mpixel: SCR masks are 1 Mpixel */

typedef struct rl_gif_image {
    int width, height;    /* logical screen */
    int frame_x, frame_y; /* the first image's rectangle on the screen */
    int frame_w, frame_h;
    uint8_t *indices;        /* width * height palette indices, row-major */
    int palette_size;        /* entries in the colour table used; 0 = none */
    uint8_t palette[256][3]; /* RGB */
} rl_gif_image;

/* Decodes a GIF held in memory (the fuzzing entry point). On failure img is
 * left all-zero. Messages do not name a file. */
int rl_gif_decode(const uint8_t *data, size_t size, rl_gif_image *img, rl_error *err);
int rl_gif_read(const char *path, rl_gif_image *img, rl_error *err);
void rl_gif_free(rl_gif_image *img);

/* Binary mask (width * height bytes, 0 or 1) of a decoded GIF: a pixel of
 * the first image is foreground when its colour is not black (0, 0, 0), or,
 * when the image has no colour table, when its index is not 0. Pixels outside
 * the first image are background. */
void rl_gif_foreground(const rl_gif_image *img, uint8_t *mask);

/* ---- ITK MetaImage (.mhd + .raw, or .mha / LOCAL data) ------------------- *
 * Header keys read: ObjectType (Image), NDims (1..3), DimSize,
 * ElementSpacing (or ElementSize; default 1), ElementType (MET_UCHAR,
 * MET_CHAR, MET_USHORT, MET_SHORT, MET_UINT, MET_INT, MET_LONG_LONG,
 * MET_ULONG_LONG, MET_FLOAT, MET_DOUBLE), ElementNumberOfChannels (1),
 * BinaryData (True), BinaryDataByteOrderMSB / ElementByteOrderMSB,
 * CompressedData (False), HeaderSize (bytes to skip; -1 = the data is the
 * last bytes of the file), Offset and TransformMatrix (checked to be finite
 * numbers, then dropped: a volume keeps spacing only), and ElementDataFile,
 * which must come last: LOCAL (data follows the header) or a file name
 * relative to the header's folder that may not leave it (no absolute path,
 * no "..", no symbolic link out of it). Other keys are ignored. The data file
 * must hold exactly HeaderSize + voxels * element bytes (at least the data
 * when HeaderSize is -1). Non-finite real values are refused. */
#define RL_METAIMAGE_HEADER_MAX_BYTES 65536
int rl_metaimage_read(const char *path, rl_volume *vol, rl_error *err);

#ifdef __cplusplus
}
#endif
#endif
