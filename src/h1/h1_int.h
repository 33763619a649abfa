/* sluice - SPDX-License-Identifier: MIT
 *
 * Private to src/h1/: the character-class table shared by the head parser
 * and the chunked decoder, and the HTTP2-Settings decoder the h2c upgrade
 * uses. Unit tests reach them through this header.
 */
#ifndef SL_H1_INT_H
#define SL_H1_INT_H

#include "h1.h"

/* Character classes (RFC 9110 5.6.2, 5.5; RFC 9112 3.2). */
#define SL_H1_CT_TOKEN 0x01  /* tchar */
#define SL_H1_CT_FVAL 0x02   /* field-value byte: VCHAR, obs-text, SP, HTAB */
#define SL_H1_CT_TARGET 0x04 /* request-target byte: VCHAR (0x21-0x7e) */
#define SL_H1_CT_HEX 0x08    /* HEXDIG */

extern const uint8_t sl_h1_ctype[256];

static inline int sl_h1_is_token(uint8_t c)
{
    return sl_h1_ctype[c] & SL_H1_CT_TOKEN;
}
static inline int sl_h1_is_fval(uint8_t c)
{
    return sl_h1_ctype[c] & SL_H1_CT_FVAL;
}

/* RFC 9112 3.2.2: when target is absolute-form ("http://host/p?q"), set
 * *authority to its authority and *rest (if not NULL) to the path and
 * query after it ("/" when empty) and return 1; else return 0. */
int sl_h1_absolute_form(sl_str_t target, sl_str_t *authority, sl_str_t *rest);

#endif
