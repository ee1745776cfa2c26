/* dkim_fixture.h - helpers the DKIM tests share: read a file, a zone-backed resolver, TXT records */
#ifndef AUTHSCORE_DKIM_FIXTURE_H
#define AUTHSCORE_DKIM_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dns.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    if (!f) { fprintf(stderr, "cannot open %s\n", path); return NULL; }
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); return NULL; }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        if (r == 0) break;
        n += r;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static dns_ctx *new_dns(void)
{
    static const char *no_zones[] = { NULL };
    struct dns_config cfg = { .zones = no_zones, .timeout_ms = 200, .budget_ms = 4000 };
    char err[256];
    dns_ctx *d = dns_new(&cfg, err, sizeof err);
    if (!d) fprintf(stderr, "dns_new: %s\n", err);
    return d;
}

static void zone_text(dns_ctx *d, const char *text)
{
    char err[256];
    int rc = dns_zone_add_text(d, text, NULL, err, sizeof err);
    if (rc) fprintf(stderr, "zone: %s\n", err);
    CHECK(rc == 0);
}

/* One TXT RR at name holding rdata verbatim, quoted and split in 255-byte strings. */
static void zone_txt(dns_ctx *d, const char *name, const char *rdata, size_t len)
{
    size_t cap = strlen(name) + 4 * len + len / 255 * 3 + 64;
    char *t = malloc(cap), *o = t;
    if (!t) { CHECK(!"oom"); return; }
    o += sprintf(o, "%s. 300 IN TXT", name);
    size_t i = 0;
    do {
        *o++ = ' ';
        *o++ = '"';
        for (size_t k = 0; k < 255 && i < len; k++, i++) {
            unsigned char c = (unsigned char)rdata[i];
            if (c == '"' || c == '\\') { *o++ = '\\'; *o++ = (char)c; }
            else if (c < 32 || c > 126) o += sprintf(o, "\\%03u", c);
            else *o++ = (char)c;
        }
        *o++ = '"';
    } while (i < len);
    strcpy(o, "\n");
    zone_text(d, t);
    free(t);
}

#endif
