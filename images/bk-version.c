/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdint.h>
#include <string.h>

#include "bk-version.h"

#define MAX_DIGITS 18 /* fits in uint64_t with room */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_ident_char(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

/* Length of the numeric component at s (0 when it is not one). */
static size_t numeric_len(const char *s)
{
	size_t n = 0;

	while (is_digit(s[n]))
		n++;
	if (n == 0 || n > MAX_DIGITS || (n > 1 && s[0] == '0'))
		return 0;
	return n;
}

bool bk_version_is_valid(const char *s)
{
	size_t n_components = 0;
	const char *p = s;

	if (!s || strnlen(s, BK_VERSION_MAX_LEN + 1) > BK_VERSION_MAX_LEN)
		return false;
	for (;;) {
		size_t n = numeric_len(p);

		if (n == 0 || ++n_components > BK_VERSION_MAX_COMPONENTS)
			return false;
		p += n;
		if (*p != '.')
			break;
		p++;
	}
	if (*p == '\0')
		return true;
	if (*p != '-')
		return false;
	p++;
	/* Pre-release: non-empty identifiers separated by single dots. */
	for (;;) {
		size_t n = 0;

		while (is_ident_char(p[n]))
			n++;
		if (n == 0)
			return false;
		p += n;
		if (*p == '\0')
			return true;
		if (*p != '.')
			return false;
		p++;
	}
}

static uint64_t parse_number(const char **p)
{
	uint64_t v = 0;

	while (is_digit(**p)) {
		v = v * 10 + (uint64_t) (**p - '0');
		(*p)++;
	}
	return v;
}

static int cmp_u64(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b ? 1 : 0;
}

/* Compare one pre-release identifier each (ends at '.' or NUL); advances both. */
static int compare_ident(const char **a, const char **b)
{
	size_t la = strcspn(*a, "."), lb = strcspn(*b, ".");
	bool na = true, nb = true;
	int r;

	for (size_t i = 0; i < la; i++)
		na = na && is_digit((*a)[i]);
	for (size_t i = 0; i < lb; i++)
		nb = nb && is_digit((*b)[i]);

	if (na && nb) {
		/* No leading zeros are checked here; compare by length, then digits. */
		r = la != lb ? (la < lb ? -1 : 1) : memcmp(*a, *b, la);
	} else if (na != nb) {
		r = na ? -1 : 1; /* numeric identifiers sort below alphanumeric ones */
	} else {
		r = memcmp(*a, *b, la < lb ? la : lb);
		if (r == 0)
			r = la < lb ? -1 : la > lb ? 1 : 0;
	}
	*a += la;
	*b += lb;
	return r < 0 ? -1 : r > 0 ? 1 : 0;
}

int bk_version_compare(const char *a, const char *b)
{
	bool va = bk_version_is_valid(a), vb = bk_version_is_valid(b);
	int r;

	if (!va || !vb) {
		if (va != vb)
			return va ? 1 : -1;
		if (!a || !b)
			return a ? 1 : b ? -1 : 0;
		r = strcmp(a, b);
		return r < 0 ? -1 : r > 0 ? 1 : 0;
	}

	/* Numeric part: a missing component counts as 0. */
	while (is_digit(*a) || is_digit(*b)) {
		uint64_t x = is_digit(*a) ? parse_number(&a) : 0;
		uint64_t y = is_digit(*b) ? parse_number(&b) : 0;

		r = cmp_u64(x, y);
		if (r != 0)
			return r;
		if (*a == '.')
			a++;
		if (*b == '.')
			b++;
	}

	/* Now both at '-' or NUL. A release sorts above any of its pre-releases. */
	if (*a == '\0' || *b == '\0')
		return *a == *b ? 0 : *a == '\0' ? 1 : -1;
	a++;
	b++;
	for (;;) {
		r = compare_ident(&a, &b);
		if (r != 0)
			return r;
		if (*a == '\0' || *b == '\0')
			return *a == *b ? 0 : *a == '\0' ? -1 : 1;
		a++;
		b++;
	}
}
