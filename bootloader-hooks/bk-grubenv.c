/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The GRUB environment block. The parser follows grub-core/lib/envblk.c (GRUB 2.06)
 * grub_envblk_iterate() step by step: what GRUB skips, we skip; where GRUB stops, we stop.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bk-grubenv.h"
#include "bk-log.h"

/* A 1024-byte block holds at most 512 "x=\n"-sized lines; a bound on the array. */
#define GRUBENV_VARS_MAX (BK_GRUBENV_SIZE / 2)

struct grubenv_var {
	char *name;
	char *value;
};

struct bk_grubenv {
	struct grubenv_var *vars;
	size_t n_vars;
	size_t n_alloc;
};

struct bk_grubenv *bk_grubenv_new(void)
{
	return calloc(1, sizeof(struct bk_grubenv));
}

static void var_release(struct grubenv_var *v)
{
	free(v->name);
	free(v->value);
	v->name = v->value = NULL;
}

struct bk_grubenv *bk_grubenv_free(struct bk_grubenv *e)
{
	if (!e)
		return NULL;
	for (size_t i = 0; i < e->n_vars; i++)
		var_release(&e->vars[i]);
	free(e->vars);
	free(e);
	return NULL;
}

/* Append a variable, taking ownership of name and value (freed on failure too). */
static int append_take(struct bk_grubenv *e, char *name, char *value)
{
	if (e->n_vars == e->n_alloc) {
		size_t n = e->n_alloc ? e->n_alloc * 2 : 16;
		struct grubenv_var *nv;

		if (n > GRUBENV_VARS_MAX)
			n = GRUBENV_VARS_MAX;
		if (e->n_vars >= n) {
			free(name);
			free(value);
			return -E2BIG;
		}
		nv = reallocarray(e->vars, n, sizeof(*nv));
		if (!nv) {
			free(name);
			free(value);
			return -ENOMEM;
		}
		e->vars = nv;
		e->n_alloc = n;
	}
	e->vars[e->n_vars].name = name;
	e->vars[e->n_vars].value = value;
	e->n_vars++;
	return 0;
}

/* GRUB's find_next_line(): the byte after the end of the line at p (backslash escapes). */
static const char *next_line(const char *p, const char *pend)
{
	while (p < pend) {
		if (*p == '\\')
			p += 2;
		else if (*p == '\n')
			break;
		else
			p++;
	}
	return p + 1;
}

int bk_grubenv_parse(const char *buf, size_t len, struct bk_grubenv **ret, struct bk_err *err)
{
	_cleanup_(bk_grubenv_freep) struct bk_grubenv *e = NULL;
	const size_t hlen = strlen(BK_GRUBENV_HEADER);
	const char *p, *pend = buf + len;
	const char *nul;
	int r;

	if (len != BK_GRUBENV_SIZE)
		return bk_err_set(err, -ENOEXEC, "is %zu bytes, not %d", len, BK_GRUBENV_SIZE);
	if (memcmp(buf, BK_GRUBENV_HEADER, hlen) != 0)
		return bk_err_set(err, -ENOEXEC, "no 'GRUB Environment Block' header");
	nul = memchr(buf, '\0', len);
	if (nul)
		return bk_err_set(err, -ENOEXEC, "NUL byte at offset %td", nul - buf);

	e = bk_grubenv_new();
	if (!e)
		return bk_err_set(err, -ENOMEM, "out of memory");

	p = buf + hlen;
	while (p < pend) {
		if (*p != '#') {
			const char *name_start = p, *name_end, *value_start;
			char *name, *value, *q;

			while (p < pend && *p != '=')
				p++;
			if (p == pend)
				break; /* GRUB: broken, stop */
			name_end = p;
			p++;
			value_start = p;
			while (p < pend) {
				if (*p == '\n')
					break;
				else if (*p == '\\')
					p += 2;
				else
					p++;
			}
			if (p >= pend)
				break; /* GRUB: broken, stop */

			name = strndup(name_start, (size_t) (name_end - name_start));
			value = malloc((size_t) (p - value_start) + 1);
			if (!name || !value) {
				free(name);
				free(value);
				return bk_err_set(err, -ENOMEM, "out of memory");
			}
			q = value;
			for (const char *s = value_start; *s != '\n'; s++) {
				if (*s == '\\')
					s++;
				*q++ = *s;
			}
			*q = '\0';
			r = append_take(e, name, value);
			if (r < 0)
				return bk_err_set(err, r, "too many variables");
		}
		p = next_line(p, pend);
	}

	BK_DBG(BOOT, "grubenv: %zu variables", e->n_vars);
	*ret = TAKE_PTR(e);
	return 0;
}

int bk_grubenv_format(const struct bk_grubenv *e, char *buf, size_t len, struct bk_err *err)
{
	const size_t hlen = strlen(BK_GRUBENV_HEADER);
	size_t need = hlen, pos;

	if (len < BK_GRUBENV_SIZE)
		return bk_err_set(err, -EINVAL, "buffer of %zu bytes is too small for a grubenv",
				  len);

	for (size_t i = 0; i < e->n_vars; i++) {
		need += strlen(e->vars[i].name) + 2; /* '=' and '\n' */
		for (const char *s = e->vars[i].value; *s; s++)
			need += (*s == '\\' || *s == '\n') ? 2 : 1;
	}
	if (need > BK_GRUBENV_SIZE)
		return bk_err_set(err, -ENOSPC, "the variables need %zu bytes, a grubenv holds %d",
				  need, BK_GRUBENV_SIZE);

	memcpy(buf, BK_GRUBENV_HEADER, hlen);
	pos = hlen;
	for (size_t i = 0; i < e->n_vars; i++) {
		size_t nl = strlen(e->vars[i].name);

		memcpy(buf + pos, e->vars[i].name, nl);
		pos += nl;
		buf[pos++] = '=';
		for (const char *s = e->vars[i].value; *s; s++) {
			if (*s == '\\' || *s == '\n')
				buf[pos++] = '\\';
			buf[pos++] = *s;
		}
		buf[pos++] = '\n';
	}
	memset(buf + pos, '#', BK_GRUBENV_SIZE - pos);
	return 0;
}

bool bk_grubenv_name_is_valid(const char *name)
{
	if (!name || name[0] == '\0' || name[0] == '#')
		return false;
	for (const char *s = name; *s; s++)
		if (*s == '=' || (unsigned char) *s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

const char *bk_grubenv_get(const struct bk_grubenv *e, const char *name)
{
	for (size_t i = e->n_vars; i > 0; i--)
		if (strcmp(e->vars[i - 1].name, name) == 0)
			return e->vars[i - 1].value;
	return NULL;
}

/* Remove the variables named name from index from on. */
static int remove_from(struct bk_grubenv *e, const char *name, size_t from)
{
	size_t out = from;
	int n = 0;

	for (size_t i = from; i < e->n_vars; i++) {
		if (strcmp(e->vars[i].name, name) == 0) {
			var_release(&e->vars[i]);
			n++;
			continue;
		}
		e->vars[out++] = e->vars[i];
	}
	e->n_vars = out;
	return n;
}

int bk_grubenv_set(struct bk_grubenv *e, const char *name, const char *value, struct bk_err *err)
{
	_cleanup_free_ char *v = NULL;
	char *n;
	int r;

	if (!bk_grubenv_name_is_valid(name))
		return bk_err_set(err, -EINVAL, "invalid grubenv variable name '%s'",
				  name ? name : "");
	v = strdup(value);
	if (!v)
		return bk_err_set(err, -ENOMEM, "out of memory");

	for (size_t i = 0; i < e->n_vars; i++) {
		if (strcmp(e->vars[i].name, name) != 0)
			continue;
		free(e->vars[i].value);
		e->vars[i].value = TAKE_PTR(v);
		(void) remove_from(e, name, i + 1);
		return 0;
	}

	n = strdup(name);
	if (!n)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = append_take(e, n, TAKE_PTR(v));
	if (r < 0)
		return bk_err_set(err, r, "cannot add grubenv variable '%s': too many variables",
				  name);
	return 0;
}

int bk_grubenv_unset(struct bk_grubenv *e, const char *name)
{
	return remove_from(e, name, 0);
}

int bk_grubenv_next(const struct bk_grubenv *e, size_t *it, const char **ret_name,
		    const char **ret_value)
{
	if (*it >= e->n_vars)
		return 1;
	*ret_name = e->vars[*it].name;
	*ret_value = e->vars[*it].value;
	(*it)++;
	return 0;
}

int bk_grubenv_copy_except(struct bk_grubenv *dst, const struct bk_grubenv *src,
			   const char *const *skip, struct bk_err *err)
{
	for (size_t i = 0; i < src->n_vars; i++) {
		bool skipped = false;
		char *name, *value;
		int r;

		for (const char *const *s = skip; s && *s; s++)
			if (strcmp(src->vars[i].name, *s) == 0)
				skipped = true;
		if (skipped)
			continue;
		name = strdup(src->vars[i].name);
		value = strdup(src->vars[i].value);
		if (!name || !value) {
			free(name);
			free(value);
			return bk_err_set(err, -ENOMEM, "out of memory");
		}
		r = append_take(dst, name, value);
		if (r < 0)
			return bk_err_set(err, r, "too many grubenv variables");
	}
	return 0;
}
