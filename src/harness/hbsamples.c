/* sluice - SPDX-License-Identifier: MIT
 *
 * httpbin's fixed documents and small generated ones: json, html, xml,
 * encoding/utf8, base64/VALUE (the URL-safe base64 value decoded),
 * links/N/OFFSET (a page of N links, OFFSET not linked) and image/png (a
 * 64x64 gradient made once with zlib, CRCs included).
 */
#include "harness_int.h"
#include <pthread.h>
#include <stdio.h>
#include <zlib.h>

static const char sample_json[] =
    "{\n  \"slideshow\": {\n    \"author\": \"Yours Truly\",\n"
    "    \"date\": \"date of publication\",\n    \"slides\": [\n"
    "      {\n        \"title\": \"Wake up to WonderWidgets!\",\n        \"type\": \"all\"\n      "
    "},\n"
    "      {\n        \"items\": [\n          \"Why <em>WonderWidgets</em> are great\",\n"
    "          \"Who <em>buys</em> WonderWidgets\"\n        ],\n"
    "        \"title\": \"Overview\",\n        \"type\": \"all\"\n      }\n    ],\n"
    "    \"title\": \"Sample Slide Show\"\n  }\n}\n";

static const char sample_xml[] =
    "<?xml version='1.0' encoding='us-ascii'?>\n\n"
    "<!--  A SAMPLE set of slides  -->\n\n"
    "<slideshow \n    title=\"Sample Slide Show\"\n    date=\"Date of publication\"\n"
    "    author=\"Yours Truly\"\n    >\n\n"
    "    <!-- TITLE SLIDE -->\n    <slide type=\"all\">\n"
    "      <title>Wake up to WonderWidgets!</title>\n    </slide>\n\n"
    "    <!-- OVERVIEW -->\n    <slide type=\"all\">\n        <title>Overview</title>\n"
    "        <item>Why <em>WonderWidgets</em> are great</item>\n        <item/>\n"
    "        <item>Who <em>buys</em> WonderWidgets</item>\n    </slide>\n\n</slideshow>";

static const char sample_html[] =
    "<!DOCTYPE html>\n<html>\n  <head>\n  </head>\n  <body>\n"
    "      <h1>Herman Melville - Moby-Dick</h1>\n\n      <div>\n        <p>\n"
    "          Availing himself of the mild, summer-cool weather that now reigned in these "
    "latitudes, and in preparation for the peculiarly active pursuits shortly to be "
    "anticipated, Perth, the begrimed, blistered old blacksmith, had not removed his "
    "portable forge to the hold again, after concluding his contributory work for Ahab's "
    "leg, but still retained it on deck, fast lashed to ringbolts by the foremast.\n"
    "        </p>\n      </div>\n  </body>\n</html>";

static const char sample_utf8[] =
    "<h1>Unicode Demo</h1>\n\n"
    "<p>Taken from <a href=\"http://www.cl.cam.ac.uk/~mgk25/ucs/examples/UTF-8-demo.txt\">"
    "http://www.cl.cam.ac.uk/~mgk25/ucs/examples/UTF-8-demo.txt</a></p>\n\n<pre>\n"
    "UTF-8 encoded sample plain-text file\n"
    "\xe2\x80\xbe\xe2\x80\xbe\xe2\x80\xbe\xe2\x80\xbe\xe2\x80\xbe\xe2\x80\xbe\n\n"
    "Mathematics and sciences:\n"
    "  \xe2\x88\xae E\xe2\x8b\x85"
    "da = Q,  n \xe2\x86\x92 \xe2\x88\x9e, "
    "\xe2\x88\x91 f(i) = \xe2\x88\x8f g(i)\n\n"
    "Greek: \xce\xa3\xe1\xbd\xb2 \xce\xb3\xce\xbd\xcf\x89\xcf\x81\xe1\xbd\xb7\xce\xb6\xcf\x89\n"
    "Russian: \xd0\x97\xd0\xb0\xd1\x80\xd0\xb5\xd0\xb3\xd0\xb8\xd1\x81\xd1\x82\xd1\x80\xd0\xb8"
    "\xd1\x80\xd1\x83\xd0\xb9\xd1\x82\xd0\xb5\xd1\x81\xd1\x8c\n"
    "Japanese: \xe3\x81\x84\xe3\x82\x8d\xe3\x81\xaf\xe3\x81\xab\xe3\x81\xbb\xe3\x81\xb8\xe3\x81"
    "\xa9\n"
    "</pre>\n";

static void send_doc(sl_req_t *req, const char *type, const void *p, size_t n)
{
    req->cbs = &sl_req_discard_cbs;
    sl_resp_simple(req, 200, type, p, n);
}

void sl_harness_hb_sample(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    if (sl_str_eq(cx->name, "json") && !cx->arg.n)
        send_doc(req, "application/json", sample_json, sizeof(sample_json) - 1);
    else if (sl_str_eq(cx->name, "xml") && !cx->arg.n)
        send_doc(req, "application/xml", sample_xml, sizeof(sample_xml) - 1);
    else if (sl_str_eq(cx->name, "html") && !cx->arg.n)
        send_doc(req, "text/html; charset=utf-8", sample_html, sizeof(sample_html) - 1);
    else if (sl_str_eq(cx->name, "encoding") && sl_str_eq(cx->arg, "utf8"))
        send_doc(req, "text/html; charset=utf-8", sample_utf8, sizeof(sample_utf8) - 1);
    else
        sl_harness_bad_request(req, "json, xml, html or encoding/utf8");
}

void sl_harness_hb_base64(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    uint8_t *out = sl_pool_alloc(&req->pool, cx->arg.n + 1);
    ssize_t n = sl_base64url_decode(cx->arg.p, cx->arg.n, out, cx->arg.n + 1);
    if (n < 0) {
        static const char msg[] = "Incorrect Base64 data try: SFRUUEJJTiBpcyBhd2Vzb21l";
        send_doc(req, "text/html; charset=utf-8", msg, sizeof(msg) - 1);
        return;
    }
    send_doc(req, "text/html; charset=utf-8", out, (size_t)n);
}

void sl_harness_hb_links(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    const char *slash = memchr(cx->arg.p, '/', cx->arg.n);
    sl_str_t ns = {cx->arg.p, slash ? (size_t)(slash - cx->arg.p) : cx->arg.n};
    sl_str_t os = slash ? (sl_str_t){slash + 1, cx->arg.n - ns.n - 1} : (sl_str_t){"0", 1};
    uint64_t n, off;
    int rv = sl_str_parse_u64(ns, 1, 200, &n);
    if (rv != 0 || (rv = sl_str_parse_u64(os, 0, 199, &off)) != 0) {
        sl_harness_bad_request(req, "links/N/OFFSET: N 1..200, OFFSET 0..199");
        return;
    }
    const char *pre = sl_harness_prefix(req);
    size_t cap = 128 + n * (strlen(pre) + 48);
    char *page = sl_pool_alloc(&req->pool, cap);
    size_t len = (size_t)snprintf(page, cap, "<html><head><title>Links</title></head><body>");
    for (uint64_t i = 0; i < n; i++)
        len += (size_t)(i == off ? snprintf(page + len, cap - len, "%llu ", (unsigned long long)i)
                                 : snprintf(page + len, cap - len,
                                            "<a href='%slinks/%llu/%llu'>%llu</a> ", pre,
                                            (unsigned long long)n, (unsigned long long)i,
                                            (unsigned long long)i));
    len += (size_t)snprintf(page + len, cap - len, "</body></html>");
    send_doc(req, "text/html; charset=utf-8", page, len);
}

/* ---- image/png ---- */

#define SIDE 64

static uint8_t png[16384];
static size_t png_len;
static pthread_once_t png_once = PTHREAD_ONCE_INIT;

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

/* length, type, data, CRC over type and data (PNG 5.3). */
static void chunk(const char *type, const uint8_t *data, uint32_t n)
{
    uint8_t *p = png + png_len;
    be32(p, n);
    memcpy(p + 4, type, 4);
    if (n)
        memcpy(p + 8, data, n);
    be32(p + 8 + n, (uint32_t)crc32(0, p + 4, n + 4));
    png_len += 12 + n;
}

static void make_png(void)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t ihdr[13], raw[SIDE * (1 + 3 * SIDE)], z[8192];
    memcpy(png, sig, 8);
    png_len = 8;
    be32(ihdr, SIDE);
    be32(ihdr + 4, SIDE);
    ihdr[8] = 8;  /* bit depth */
    ihdr[9] = 2;  /* truecolour RGB */
    ihdr[10] = 0; /* deflate */
    ihdr[11] = 0; /* adaptive filtering */
    ihdr[12] = 0; /* no interlace */
    chunk("IHDR", ihdr, 13);
    for (int y = 0; y < SIDE; y++) {
        uint8_t *row = raw + y * (1 + 3 * SIDE);
        row[0] = 0; /* filter: none */
        for (int x = 0; x < SIDE; x++) {
            row[1 + 3 * x] = (uint8_t)(x * 4);
            row[2 + 3 * x] = (uint8_t)(y * 4);
            row[3 + 3 * x] = 0x80;
        }
    }
    uLongf zn = sizeof(z);
    if (compress2(z, &zn, raw, sizeof(raw), 9) != Z_OK) {
        png_len = 0;
        return;
    }
    chunk("IDAT", z, (uint32_t)zn);
    chunk("IEND", NULL, 0);
}

void sl_harness_hb_image(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    if (!sl_str_eq(cx->arg, "png")) {
        sl_harness_bad_request(req, "image/png");
        return;
    }
    pthread_once(&png_once, make_png);
    if (!png_len) {
        req->cbs = &sl_req_discard_cbs;
        sl_resp_error(req, 500, "could not make the image");
        return;
    }
    req->cbs = &sl_req_discard_cbs;
    req->res.status = 200;
    req->res.content_length = (int64_t)png_len;
    sl_resp_header_add(req, "content-type", "image/png");
    sl_resp_send(req, png, png_len, 1);
}
