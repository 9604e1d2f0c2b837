/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * HTTP(S) range reads with libcurl (docs/stage-url.md). One easy handle per bk_fetch, so
 * requests reuse the connection (keep-alive); libcurl follows no redirect on its own: a 3xx is
 * followed here, only to the same origin, and the range is asked again.
 *
 * libcurl is not linked: it is loaded with dlopen() the first time a fetch is made (as systemd
 * loads its optional libraries). Linked, libcurl and the 40-odd libraries it needs were mapped
 * and relocated (-z now) in every process that links libbootbank.a, which took bankd's idle RSS
 * from 5.4 to 9.5 MiB; bankd fetches only in a job's child process, and bankctl only when a URL
 * is given. The table below holds every libcurl function this file calls, typed from
 * <curl/curl.h> itself, so a prototype cannot drift from the header.
 */
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "bk-bundle.h"
#include "bk-fetch.h"
#include "bk-fs.h"
#include "bk-log.h"

#define VALIDATOR_MAX	   256
#define RETRY_DELAY_MAX_MS 8000
#define TABLE_PIECE	   (1u << 20)

struct bk_fetch {
	CURL *curl;
	char *url;
	struct curl_slist *headers; /* Authorization, when a token is configured (https) */
	bool token_withheld;	    /* a token is configured, but the URL is http:// */
	struct bk_fetch_config c;   /* its strings are the copies below */
	char *ca_file, *client_cert, *client_key;
	char errbuf[CURL_ERROR_SIZE];
	/* What the first response said; every later one must agree. */
	uint64_t size;
	char validator[VALIDATOR_MAX]; /* ETag (strong) or Last-Modified; "" none */
	bool transient;		       /* the last failure */
	struct bk_fetch_stats stats;
	/* One transfer. */
	uint8_t *buf;
	size_t want, got;
	bool overflow, wrong_status;
	bool has_range;
	uint64_t cr_first, cr_last, cr_total;
	char etag[VALIDATOR_MAX], last_modified[VALIDATOR_MAX];
};

/* The soname of libcurl's ABI 4 (Debian package libcurl4). */
#define LIBCURL_SONAME "libcurl.so.4"

static struct {
	__typeof__(curl_global_init) *global_init;
	__typeof__(curl_easy_init) *easy_init;
	__typeof__(curl_easy_setopt) *easy_setopt;
	__typeof__(curl_easy_perform) *easy_perform;
	__typeof__(curl_easy_getinfo) *easy_getinfo;
	__typeof__(curl_easy_reset) *easy_reset;
	__typeof__(curl_easy_cleanup) *easy_cleanup;
	__typeof__(curl_easy_strerror) *easy_strerror;
	__typeof__(curl_slist_append) *slist_append;
	__typeof__(curl_slist_free_all) *slist_free_all;
	__typeof__(curl_url) *url;
	__typeof__(curl_url_set) *url_set;
	__typeof__(curl_url_get) *url_get;
	__typeof__(curl_url_cleanup) *url_cleanup;
	__typeof__(curl_free) *free;
} C;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static char global_error[256]; /* "" once libcurl is loaded and initialised */

static void global_init(void)
{
	static const struct {
		const char *name;
		void **fn;
	} syms[] = {
#define SYM(f) { "curl_" #f, (void **) &C.f }
		SYM(global_init),  SYM(easy_init),	SYM(easy_setopt),  SYM(easy_perform),
		SYM(easy_getinfo), SYM(easy_reset),	SYM(easy_cleanup), SYM(easy_strerror),
		SYM(slist_append), SYM(slist_free_all), SYM(url),	   SYM(url_set),
		SYM(url_get),	   SYM(url_cleanup),	SYM(free),
#undef SYM
	};
	void *dl;
	CURLcode rc;

	dl = dlopen(LIBCURL_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		(void) snprintf(global_error, sizeof(global_error),
				"http(s) needs libcurl (" LIBCURL_SONAME
				", Debian package libcurl4): %s",
				dlerror());
		return;
	}
	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		*syms[i].fn = dlsym(dl, syms[i].name);
		if (!*syms[i].fn) {
			(void) snprintf(global_error, sizeof(global_error),
					LIBCURL_SONAME " has no %s (libcurl 7.85 or later needed)",
					syms[i].name);
			return; /* the library stays loaded: cheaper than a half-reset table */
		}
	}
	rc = C.global_init(CURL_GLOBAL_DEFAULT);
	if (rc != CURLE_OK)
		(void) snprintf(global_error, sizeof(global_error), "cannot initialise libcurl: %s",
				C.easy_strerror(rc));
}

/* Loads libcurl once per process; -ENOPKG with the reason when it cannot be used. */
static int load_curl(struct bk_err *err)
{
	(void) pthread_once(&global_once, global_init);
	if (global_error[0])
		return bk_err_set(err, -ENOPKG, "%s", global_error);
	return 0;
}

bool bk_fetch_is_url(const char *s)
{
	return s && (strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0);
}

static bool is_https(const char *s)
{
	return strncasecmp(s, "https://", 8) == 0;
}

static int parse_u64(const char **p, uint64_t *ret)
{
	uint64_t v = 0;

	if (!isdigit((unsigned char) **p))
		return -EINVAL;
	for (; isdigit((unsigned char) **p); (*p)++) {
		uint64_t digit = (uint64_t) (**p - '0');

		if (v > UINT64_MAX / 10 || (v == UINT64_MAX / 10 && digit > UINT64_MAX % 10))
			return -EINVAL;
		v = v * 10 + digit;
	}
	*ret = v;
	return 0;
}

int bk_fetch_parse_content_range(const char *value, uint64_t *ret_first, uint64_t *ret_last,
				 uint64_t *ret_total)
{
	const char *p = value;
	uint64_t first, last, total;

	while (*p == ' ' || *p == '\t')
		p++;
	if (strncasecmp(p, "bytes", 5) != 0)
		return -EINVAL;
	p += 5;
	if (*p != ' ')
		return -EINVAL;
	while (*p == ' ')
		p++;
	if (parse_u64(&p, &first) < 0 || *p++ != '-' || parse_u64(&p, &last) < 0 || *p++ != '/' ||
	    parse_u64(&p, &total) < 0)
		return -EINVAL;
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (*p != '\0' || last < first || last >= total)
		return -EINVAL;
	*ret_first = first;
	*ret_last = last;
	*ret_total = total;
	return 0;
}

static int url_origin(const char *url, char **ret_scheme, char **ret_host, char **ret_port)
{
	CURLU *u = C.url();
	int r = -EINVAL;

	if (!u)
		return -ENOMEM;
	if (C.url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    C.url_get(u, CURLUPART_SCHEME, ret_scheme, 0) == CURLUE_OK) {
		if (C.url_get(u, CURLUPART_HOST, ret_host, 0) == CURLUE_OK) {
			if (C.url_get(u, CURLUPART_PORT, ret_port, CURLU_DEFAULT_PORT) == CURLUE_OK)
				r = 0;
			else
				C.free(*ret_host);
		}
		if (r < 0)
			C.free(*ret_scheme);
	}
	C.url_cleanup(u);
	return r;
}

bool bk_fetch_same_origin(const char *a, const char *b)
{
	char *sa, *ha, *pa, *sb, *hb, *pb;
	bool same;

	if (load_curl(NULL) < 0 || url_origin(a, &sa, &ha, &pa) < 0)
		return false;
	if (url_origin(b, &sb, &hb, &pb) < 0) {
		C.free(sa);
		C.free(ha);
		C.free(pa);
		return false;
	}
	same = strcasecmp(sa, sb) == 0 && strcasecmp(ha, hb) == 0 && strcmp(pa, pb) == 0;
	C.free(sa);
	C.free(ha);
	C.free(pa);
	C.free(sb);
	C.free(hb);
	C.free(pb);
	return same;
}

/* ---- callbacks ----------------------------------------------------------------------------- */

static void copy_value(char *dst, size_t size, const char *v, size_t len)
{
	while (len > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		len--;
	}
	while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
		len--;
	if (len >= size)
		len = size - 1;
	memcpy(dst, v, len);
	dst[len] = '\0';
}

static size_t on_header(char *data, size_t size, size_t n, void *userdata)
{
	struct bk_fetch *f = userdata;
	size_t len = size * n;
	char value[VALIDATOR_MAX];

	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		/* A new response (after a 100 Continue, say): forget the previous headers. */
		f->has_range = false;
		f->etag[0] = f->last_modified[0] = '\0';
	} else if (len > 14 && strncasecmp(data, "Content-Range:", 14) == 0) {
		copy_value(value, sizeof(value), data + 14, len - 14);
		f->has_range = bk_fetch_parse_content_range(value, &f->cr_first, &f->cr_last,
							    &f->cr_total) == 0;
	} else if (len > 5 && strncasecmp(data, "ETag:", 5) == 0) {
		copy_value(f->etag, sizeof(f->etag), data + 5, len - 5);
	} else if (len > 14 && strncasecmp(data, "Last-Modified:", 14) == 0) {
		copy_value(f->last_modified, sizeof(f->last_modified), data + 14, len - 14);
	}
	return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *userdata)
{
	struct bk_fetch *f = userdata;
	size_t len = size * n;
	long status = 0;

	(void) C.easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status != 206) {
		/* Never keep the body of anything but the range asked for. */
		f->wrong_status = true;
		return status >= 300 && status < 400 ? len : 0;
	}
	if (len > f->want - f->got) {
		f->overflow = true;
		return 0;
	}
	memcpy(f->buf + f->got, data, len);
	f->got += len;
	return len;
}

/* ---- setup ------------------------------------------------------------------------------- */

int bk_fetch_new(const char *url, const struct bk_fetch_config *c, struct bk_fetch **ret,
		 struct bk_err *err)
{
	_cleanup_(bk_fetch_freep) struct bk_fetch *f = NULL;
	int r;

	if (!bk_fetch_is_url(url))
		return bk_err_set(err, -EINVAL, "'%s' is not an http:// or https:// URL", url);
	r = load_curl(err);
	if (r < 0)
		return r;
	f = calloc(1, sizeof(*f));
	if (!f)
		return bk_err_set(err, -ENOMEM, "out of memory");
	f->c = *c;
	f->c.bearer_token = NULL; /* only in the header list below */
	f->url = strdup(url);
	f->curl = C.easy_init();
	f->ca_file = c->ca_file ? strdup(c->ca_file) : NULL;
	f->client_cert = c->client_cert ? strdup(c->client_cert) : NULL;
	f->client_key = c->client_key ? strdup(c->client_key) : NULL;
	if (!f->url || !f->curl || (c->ca_file && !f->ca_file) ||
	    (c->client_cert && !f->client_cert) || (c->client_key && !f->client_key))
		return bk_err_set(err, -ENOMEM, "out of memory");
	f->c.ca_file = f->ca_file;
	f->c.client_cert = f->client_cert;
	f->c.client_key = f->client_key;
	if (c->bearer_token && is_https(url)) {
		_cleanup_free_ char *h = NULL;

		if (asprintf(&h, "Authorization: Bearer %s", c->bearer_token) < 0)
			return bk_err_set(err, -ENOMEM, "out of memory");
		f->headers = C.slist_append(NULL, h);
		explicit_bzero(h, strlen(h));
		if (!f->headers)
			return bk_err_set(err, -ENOMEM, "out of memory");
	} else if (c->bearer_token) {
		f->token_withheld = true;
	}
	*ret = TAKE_PTR(f);
	return 0;
}

struct bk_fetch *bk_fetch_free(struct bk_fetch *f)
{
	if (!f)
		return NULL;
	if (f->curl)
		C.easy_cleanup(f->curl);
	C.slist_free_all(f->headers);
	free(f->url);
	free(f->ca_file);
	free(f->client_cert);
	free(f->client_key);
	free(f);
	return NULL;
}

uint64_t bk_fetch_get_size(const struct bk_fetch *f)
{
	return f->size;
}

const char *bk_fetch_get_url(const struct bk_fetch *f)
{
	return f->url;
}

bool bk_fetch_last_failure_transient(const struct bk_fetch *f)
{
	return f->transient;
}

void bk_fetch_get_stats(const struct bk_fetch *f, struct bk_fetch_stats *ret)
{
	*ret = f->stats;
}

/* ---- one request --------------------------------------------------------------------------- */

static bool transient_curl(CURLcode rc)
{
	return rc == CURLE_COULDNT_CONNECT || rc == CURLE_OPERATION_TIMEDOUT ||
	       rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR || rc == CURLE_PARTIAL_FILE ||
	       rc == CURLE_GOT_NOTHING || rc == CURLE_HTTP2 || rc == CURLE_HTTP2_STREAM;
}

static bool tls_trust_failure(CURLcode rc)
{
	return rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
	       rc == CURLE_SSL_ISSUER_ERROR || rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH;
}

/*
 * What to check after a 401, a 403 or (https) a 400: which credentials went with the request
 * decides the hint, so the message points at the setting that needs fixing. nginx answers 400
 * to a client certificate it requires or cannot verify (ssl_verify_client), before any
 * location is looked at.
 */
static const char *auth_hint(const struct bk_fetch *f, long status)
{
	bool token = f->headers, cert = f->c.client_cert && is_https(f->url);

	if (status == 401) {
		if (f->token_withheld)
			return "the server wants credentials; [fetch] bearer-token-file is sent over "
			       "https only, never to an http:// URL";
		if (token)
			return "the server did not accept the token of [fetch] bearer-token-file, "
			       "or wants [fetch] client-cert";
		return "the server wants credentials: [fetch] bearer-token-file, client-cert";
	}
	if (status == 403) {
		if (token || cert)
			return "the server refused these credentials: check [fetch] client-cert, "
			       "client-key and bearer-token-file, and what the server allows them";
		if (f->token_withheld)
			return "the server refused access; [fetch] bearer-token-file is sent over "
			       "https only, never to an http:// URL";
		return "the server refused access without credentials: [fetch] client-cert and "
		       "client-key, or bearer-token-file";
	}
	if (cert)
		return "bad request; a server that checks client certificates says so when it "
		       "does not trust [fetch] client-cert";
	return "bad request; a server that checks client certificates says so when none is "
	       "sent: [fetch] client-cert";
}

/*
 * One attempt at bytes [off, off + len). 0; 1 when a same-origin redirect changed f->url (ask
 * again); < 0 with f->transient set for what a retry may fix.
 */
static int attempt(struct bk_fetch *f, uint64_t off, void *buf, size_t len, struct bk_err *err)
{
	char range[64], ifrange[VALIDATOR_MAX + 16];
	struct curl_slist *headers = NULL, *h;
	long status = 0;
	CURLcode rc;
	char *location = NULL;

	f->transient = false;
	f->buf = buf;
	f->want = len;
	f->got = 0;
	f->overflow = f->wrong_status = f->has_range = false;
	f->etag[0] = f->last_modified[0] = f->errbuf[0] = '\0';
	(void) snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, off, off + len - 1);
	for (h = f->headers; h; h = h->next)
		if (!(headers = C.slist_append(headers, h->data)))
			goto oom;
	if (f->validator[0]) {
		(void) snprintf(ifrange, sizeof(ifrange), "If-Range: %s", f->validator);
		if (!(h = C.slist_append(headers, ifrange)))
			goto oom;
		headers = h;
	}

	C.easy_reset(f->curl);
	if (C.easy_setopt(f->curl, CURLOPT_URL, f->url) != CURLE_OK ||
	    C.easy_setopt(f->curl, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK)
		goto oom;
	(void) C.easy_setopt(f->curl, CURLOPT_NOSIGNAL, 1L);
	(void) C.easy_setopt(f->curl, CURLOPT_FOLLOWLOCATION, 0L);
	(void) C.easy_setopt(f->curl, CURLOPT_RANGE, range);
	(void) C.easy_setopt(f->curl, CURLOPT_HTTPHEADER, headers);
	(void) C.easy_setopt(f->curl, CURLOPT_ERRORBUFFER, f->errbuf);
	(void) C.easy_setopt(f->curl, CURLOPT_HEADERFUNCTION, on_header);
	(void) C.easy_setopt(f->curl, CURLOPT_HEADERDATA, f);
	(void) C.easy_setopt(f->curl, CURLOPT_WRITEFUNCTION, on_body);
	(void) C.easy_setopt(f->curl, CURLOPT_WRITEDATA, f);
	(void) C.easy_setopt(f->curl, CURLOPT_CONNECTTIMEOUT, (long) f->c.connect_timeout_sec);
	(void) C.easy_setopt(f->curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	(void) C.easy_setopt(f->curl, CURLOPT_LOW_SPEED_TIME, (long) f->c.low_speed_timeout_sec);
	(void) C.easy_setopt(f->curl, CURLOPT_SSL_VERIFYPEER, 1L);
	(void) C.easy_setopt(f->curl, CURLOPT_SSL_VERIFYHOST, 2L);
	(void) C.easy_setopt(f->curl, CURLOPT_ACCEPT_ENCODING, NULL);
	if (f->c.ca_file && C.easy_setopt(f->curl, CURLOPT_CAINFO, f->c.ca_file) != CURLE_OK)
		goto oom;
	if (f->c.client_cert &&
	    (C.easy_setopt(f->curl, CURLOPT_SSLCERT, f->c.client_cert) != CURLE_OK ||
	     C.easy_setopt(f->curl, CURLOPT_SSLKEY,
			   f->c.client_key ? f->c.client_key : f->c.client_cert) != CURLE_OK))
		goto oom;

	f->stats.requests++;
	rc = C.easy_perform(f->curl);
	C.slist_free_all(headers);
	(void) C.easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, &status);

	if (status >= 300 && status < 400 && status != 304) {
		if (C.easy_getinfo(f->curl, CURLINFO_REDIRECT_URL, &location) != CURLE_OK ||
		    !location)
			return bk_err_set(err, -EIO, "HTTP %ld without a Location", status);
		if (!bk_fetch_same_origin(f->url, location))
			return bk_err_set(err, -EIO,
					  "redirect to another origin refused: '%s' (give the "
					  "final URL)",
					  location);
		{
			char *u = strdup(location);

			if (!u)
				return bk_err_set(err, -ENOMEM, "out of memory");
			free(f->url);
			f->url = u;
		}
		return 1;
	}
	if (tls_trust_failure(rc))
		return bk_err_set(err, -EKEYREJECTED, "TLS: %s",
				  f->errbuf[0] ? f->errbuf : C.easy_strerror(rc));
	if (f->overflow) {
		f->transient = true;
		return bk_err_set(err, -EIO, "the server sent more bytes than asked for");
	}
	if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && f->wrong_status)) {
		f->transient = transient_curl(rc);
		return bk_err_set(err, -EIO, "%s", f->errbuf[0] ? f->errbuf : C.easy_strerror(rc));
	}
	if (status == 404 || status == 410)
		return bk_err_set(err, -ENOENT, "HTTP %ld (not found)", status);
	if (status == 401 || status == 403 || (status == 400 && is_https(f->url)))
		return bk_err_set(err, -EIO, "HTTP %ld (%s)", status, auth_hint(f, status));
	if (status == 416)
		return bk_err_set(err, f->size ? -EIO : -ENOEXEC,
				  f->size ?
					  "HTTP 416: the file changed on the server (it is shorter "
					  "now)" :
					  "HTTP 416: the file is shorter than the range");
	if (status == 200 && f->validator[0])
		return bk_err_set(err, -EIO,
				  "the file changed on the server (If-Range %s no longer matches)",
				  f->validator);
	if (status == 200)
		return bk_err_set(err, -EIO, "the server does not serve byte ranges (HTTP 200)");
	if (status >= 500 || status == 408 || status == 429) {
		f->transient = true;
		return bk_err_set(err, -EIO, "HTTP %ld", status);
	}
	if (status != 206)
		return bk_err_set(err, -EIO, "HTTP %ld", status);
	if (!f->has_range)
		return bk_err_set(err, -EIO, "HTTP 206 without a valid Content-Range");
	if (f->size && f->cr_total != f->size)
		return bk_err_set(err, -EIO,
				  "the file changed on the server (its size was %" PRIu64
				  ", is %" PRIu64 ")",
				  f->size, f->cr_total);
	if (f->cr_first != off || f->cr_last != off + len - 1) {
		if (f->cr_first == off && f->cr_last < off + len - 1 &&
		    f->cr_last == f->cr_total - 1)
			return bk_err_set(err, -ENOEXEC,
					  "the file ends at %" PRIu64 ", inside the range",
					  f->cr_total);
		return bk_err_set(err, -EIO, "the server sent bytes %" PRIu64 "-%" PRIu64 " for %s",
				  f->cr_first, f->cr_last, range);
	}
	if (f->got != len) {
		f->transient = true;
		return bk_err_set(err, -EIO, "short read: %zu of %zu bytes", f->got, len);
	}
	if (!f->size) {
		f->size = f->cr_total;
		/* A strong ETag, else Last-Modified: what If-Range sends from now on. */
		if (f->etag[0] == '"')
			memcpy(f->validator, f->etag, sizeof(f->validator));
		else if (f->last_modified[0])
			memcpy(f->validator, f->last_modified, sizeof(f->validator));
	} else if (f->etag[0] == '"' && f->validator[0] == '"' &&
		   strcmp(f->etag, f->validator) != 0) {
		return bk_err_set(err, -EIO, "the file changed on the server (ETag %s, was %s)",
				  f->etag, f->validator);
	}
	f->stats.bytes += len;
	return 0;
oom:
	C.slist_free_all(headers);
	return bk_err_set(err, -ENOMEM, "out of memory");
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = { .tv_sec = (time_t) (ms / 1000),
			       .tv_nsec = (long) (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int bk_fetch_range(struct bk_fetch *f, uint64_t off, void *buf, size_t len, struct bk_err *err)
{
	uint64_t delay = f->c.retry_delay_ms, tries = 0;
	unsigned redirects = 0;
	int r;

	if (len == 0)
		return 0;
	if (f->size && (off > f->size || len > f->size - off))
		return bk_err_set(err, -ENOEXEC,
				  "'%s': bytes %" PRIu64 "-%" PRIu64 " are past its end (%" PRIu64
				  " bytes)",
				  f->url, off, off + len - 1, f->size);
	for (;;) {
		r = attempt(f, off, buf, len, err);
		if (r == 1) {
			if (++redirects > BK_FETCH_MAX_REDIRECTS) {
				f->transient = false;
				r = bk_err_set(err, -EIO, "more than %d redirects",
					       BK_FETCH_MAX_REDIRECTS);
				break;
			}
			continue;
		}
		if (r >= 0 || !f->transient || tries >= f->c.retries)
			break;
		BK_DBG(BANK, "'%s' bytes %" PRIu64 "+%zu: %s; retrying in %" PRIu64 " ms", f->url,
		       off, len, err ? err->msg : "", delay);
		if (err)
			bk_err_clear(err);
		sleep_ms(delay);
		delay = delay * 2 > RETRY_DELAY_MAX_MS ? RETRY_DELAY_MAX_MS : delay * 2;
		tries++;
		f->stats.retries++;
	}
	if (r < 0)
		return bk_err_prefix(err, "'%s': bytes %" PRIu64 "-%" PRIu64 "%s", f->url, off,
				     off + len - 1,
				     tries > 0 ? tries == f->c.retries ? " (after every retry)" :
									 " (after retries)" :
						 "");
	return 0;
}

/* ---- a bundle's metadata ----------------------------------------------------------------------
 */

/* Fetch [off, end) into fd at the same offsets, in pieces of at most TABLE_PIECE bytes. */
static int fetch_into(struct bk_fetch *f, int fd, uint64_t off, uint64_t end, struct bk_err *err)
{
	_cleanup_free_ uint8_t *buf = NULL;
	size_t piece = end - off < TABLE_PIECE ? (size_t) (end - off) : TABLE_PIECE;
	int r;

	if (off >= end)
		return 0;
	buf = malloc(piece);
	if (!buf)
		return bk_err_set(err, -ENOMEM, "out of memory");
	while (off < end) {
		size_t len = end - off < piece ? (size_t) (end - off) : piece;

		r = bk_fetch_range(f, off, buf, len, err);
		if (r < 0)
			return r;
		if (pwrite(fd, buf, len, (off_t) off) != (ssize_t) len)
			return bk_err_set(err, -errno ?: -EIO,
					  "cannot keep the bundle's metadata: %m");
		off += len;
	}
	return 0;
}

int bk_fetch_bundle_head_into(struct bk_fetch *f, int fd, struct bk_err *err)
{
	uint8_t head[BK_BUNDLE_HEADER_SIZE];
	struct bk_bundle_header h;
	int r;

	r = bk_fetch_range(f, 0, head, sizeof(head), err);
	if (r == -ENOEXEC)
		return bk_err_prefix(err, "header: truncated");
	if (r < 0)
		return r;
	r = bk_bundle_header_decode(head, sizeof(head), f->size, &h, err);
	if (r < 0)
		return r;
	if (ftruncate(fd, (off_t) f->size) < 0)
		return bk_err_set(err, -errno, "cannot size the bundle's copy: %m");
	if (pwrite(fd, head, sizeof(head), 0) != (ssize_t) sizeof(head))
		return bk_err_set(err, -errno ?: -EIO, "cannot keep the bundle's header: %m");
	return fetch_into(f, fd, sizeof(head), h.payload_offset, err);
}

int bk_fetch_bundle_head(struct bk_fetch *f, int *ret_fd, struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;
	int r;

	fd = memfd_create("bootbank-url", MFD_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot create a memfd: %m");
	r = bk_fetch_bundle_head_into(f, fd, err);
	if (r < 0)
		return r;
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int bk_fetch_chunk_table(struct bk_fetch *f, int fd, const struct bk_manifest *m,
			 struct bk_err *err)
{
	uint64_t start = UINT64_MAX;
	int r;

	for (size_t i = 0; i < m->n_payloads; i++) {
		const struct bk_payload *p = &m->payloads[i];
		uint64_t end = p->offset + p->size;
		uint64_t next = (end + BK_BUNDLE_ALIGN - 1) & ~(uint64_t) (BK_BUNDLE_ALIGN - 1);

		if (p->chunks_offset < start)
			start = p->chunks_offset;
		/* The padding after the payload: a file's is read by bk_bundle_check_padding(). */
		r = fetch_into(f, fd, end, next < f->size ? next : f->size, err);
		if (r < 0)
			return r;
	}
	if (start == UINT64_MAX || start > f->size)
		return bk_err_set(err, -ENOEXEC, "no chunk table");
	return fetch_into(f, fd, start, f->size, err);
}
