/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bankd: the bootbank daemon (docs/dbus-api.md). One thread, one sd-event loop: the bus
 * connection, the pipes and exits of the children that run the operations, SIGTERM/SIGINT.
 * At start, before it takes its bus name, it recovers what a killed operation left (a child
 * running `recover`), so a client that sees the name sees a recovered system.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bankd.h"
#include "bk-err.h"
#include "bk-json.h"
#include "bk-log.h"

static const char *arg_root = "/";
static const char *arg_config = NULL;
static const char *arg_bus_address = NULL;
static const char *arg_admin_group = BANKD_ADMIN_GROUP;
static bool arg_no_recover = false;

static void help(void)
{
	printf("Usage: bankd [OPTIONS]\n\n"
	       "The bootbank daemon: org.bootbank.Manager1 on the system bus.\n\n"
	       "  -r, --root DIR          serve the bootbank beneath DIR (default /)\n"
	       "  -c, --config FILE       configuration (default ROOT/etc/bootbank/system.conf)\n"
	       "      --bus-address ADDR  connect to this bus instead of the system bus\n"
	       "                          (also: DBUS_SYSTEM_BUS_ADDRESS)\n"
	       "      --admin-group NAME  the group allowed to change things besides root\n"
	       "                          (default bootbank)\n"
	       "      --no-recover        do not run the recovery at start\n"
	       "      --log-level L       err, warning, info (default) or debug\n"
	       "  -h, --help              this help\n"
	       "      --version           the version\n");
}

static int parse_argv(int argc, char *argv[])
{
	enum { ARG_BUS = 0x100, ARG_GROUP, ARG_NO_RECOVER, ARG_LOG_LEVEL, ARG_VERSION };
	static const struct option options[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "config", required_argument, NULL, 'c' },
		{ "bus-address", required_argument, NULL, ARG_BUS },
		{ "admin-group", required_argument, NULL, ARG_GROUP },
		{ "no-recover", no_argument, NULL, ARG_NO_RECOVER },
		{ "log-level", required_argument, NULL, ARG_LOG_LEVEL },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, ARG_VERSION },
		{ 0 },
	};
	int c, l;

	while ((c = getopt_long(argc, argv, "r:c:h", options, NULL)) >= 0) {
		switch (c) {
		case 'r':
			arg_root = optarg;
			break;
		case 'c':
			arg_config = optarg;
			break;
		case ARG_BUS:
			arg_bus_address = optarg;
			break;
		case ARG_GROUP:
			arg_admin_group = optarg;
			break;
		case ARG_NO_RECOVER:
			arg_no_recover = true;
			break;
		case ARG_LOG_LEVEL:
			l = bk_log_level_from_string(optarg);
			if (l < 0) {
				bk_log(LOG_ERR, "unknown log level '%s'", optarg);
				return -EINVAL;
			}
			bk_log_max_level = l;
			break;
		case 'h':
			help();
			return 0;
		case ARG_VERSION:
			puts("bankd " BK_VERSION);
			return 0;
		default:
			return -EINVAL;
		}
	}
	if (optind < argc) {
		bk_log(LOG_ERR, "unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	return 1;
}

static int connect_bus(sd_bus **ret)
{
	sd_bus *bus = NULL;
	int r;

	if (!arg_bus_address)
		return sd_bus_open_system_with_description(ret, "bankd");
	r = sd_bus_new(&bus);
	if (r >= 0)
		r = sd_bus_set_address(bus, arg_bus_address);
	if (r >= 0)
		r = sd_bus_set_bus_client(bus, true);
	if (r >= 0)
		r = sd_bus_set_trusted(bus, false);
	if (r >= 0)
		r = sd_bus_negotiate_fds(bus, true);
	if (r >= 0)
		r = sd_bus_start(bus);
	if (r < 0) {
		sd_bus_unref(bus);
		return r;
	}
	*ret = bus;
	return 0;
}

static void log_recovery_line(const char *line, size_t len)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	struct json_object *type = NULL, *text = NULL;

	if (bk_json_parse(line, len, &o, NULL) < 0 || !json_object_object_get_ex(o, "type", &type))
		return;
	if (strcmp(json_object_get_string(type), "message") == 0 &&
	    json_object_object_get_ex(o, "text", &text))
		bk_log(LOG_NOTICE, "recovery at start: %s", json_object_get_string(text));
	else if (strcmp(json_object_get_string(type), "result") == 0 &&
		 json_object_object_get_ex(o, "message", &text) && json_object_get_string(text)[0])
		bk_log(LOG_NOTICE, "recovery at start: %s", json_object_get_string(text));
}

/*
 * What a killed stage or live patch left, recovered before the name is taken (the event loop
 * is not serving yet, so waiting here blocks nobody). A held lock means someone else is
 * running, and that run recovers; the child answers busy and we go on.
 */
static void recover_at_start(struct bankd_manager *m)
{
	struct bankd_request req = { .op = BANKD_OP_RECOVER, .fd = -EBADF };
	int pfd[2], status = 0;
	char buf[8192];
	size_t len = 0;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0) {
		bk_log(LOG_WARNING, "cannot recover at start: %m, ignoring");
		return;
	}
	pid = fork();
	if (pid < 0) {
		bk_log(LOG_WARNING, "cannot recover at start: %m, ignoring");
		(void) close(pfd[0]);
		(void) close(pfd[1]);
		return;
	}
	if (pid == 0) {
		(void) close(pfd[0]);
		bankd_child_main(m->root, m->config, &req, pfd[1]);
	}
	(void) close(pfd[1]);
	/* What the recovery did or why it failed goes to the log, as one line each. */
	for (;;) {
		ssize_t n = read(pfd[0], buf + len, sizeof(buf) - 1 - len);
		char *line, *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t) n;
		buf[len] = '\0';
		for (line = buf; (nl = strchr(line, '\n')); line = nl + 1) {
			*nl = '\0';
			log_recovery_line(line, (size_t) (nl - line));
		}
		len = strlen(line);
		memmove(buf, line, len);
		if (len == sizeof(buf) - 1)
			len = 0; /* a line longer than that is not ours */
	}
	(void) close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == BK_EXIT_BUSY)
		bk_log(LOG_NOTICE, "recovery at start skipped: another operation holds the lock");
	else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		bk_log(LOG_WARNING, "recovery at start failed (status 0x%x), ignoring", status);
}

static int on_term(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	struct bankd_manager *m = userdata;

	bk_log(LOG_INFO, "%s: stopping", strsignal((int) si->ssi_signo));
	m->exiting = true;
	return sd_event_exit(m->event, 0);
}

int main(int argc, char *argv[])
{
	struct bankd_manager m = { .host_mntns_fd = -EBADF };
	_cleanup_free_ char *root = NULL, *config = NULL;
	sigset_t mask;
	int r;

	bk_log_set_program("bankd");
	r = parse_argv(argc, argv);
	if (r <= 0)
		return r < 0 ? BK_EXIT_USAGE : BK_EXIT_OK;
	/* Absolute: the working directory is "/" (and setns() would reset it anyway). */
	root = realpath(arg_root, NULL);
	if (!root) {
		bk_log(LOG_ERR, "cannot resolve root '%s': %m", arg_root);
		return BK_EXIT_USAGE;
	}
	m.root = root;
	if (arg_config) {
		config = realpath(arg_config, NULL);
		if (!config) {
			bk_log(LOG_ERR, "cannot resolve configuration '%s': %m", arg_config);
			return BK_EXIT_USAGE;
		}
	}
	m.config = config;
	m.admin_group = arg_admin_group;
	umask(0022);
	if (chdir("/") < 0) {
		bk_log(LOG_ERR, "cannot change to '/': %m");
		return BK_EXIT_FAILURE;
	}
	m.host_mntns_fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	if (m.host_mntns_fd < 0) {
		bk_log(LOG_ERR, "cannot open our mount namespace: %m");
		return BK_EXIT_FAILURE;
	}

	/* sd-event takes these as event sources; children unblock them again. */
	(void) sigemptyset(&mask);
	(void) sigaddset(&mask, SIGTERM);
	(void) sigaddset(&mask, SIGINT);
	(void) sigaddset(&mask, SIGCHLD);
	(void) sigprocmask(SIG_BLOCK, &mask, NULL);
	(void) signal(SIGPIPE, SIG_IGN);

	if (!arg_no_recover)
		recover_at_start(&m);

	r = sd_event_default(&m.event);
	if (r < 0) {
		bk_log(LOG_ERR, "cannot make the event loop: %s", strerror(-r));
		return BK_EXIT_FAILURE;
	}
	r = sd_event_add_signal(m.event, NULL, SIGTERM, on_term, &m);
	if (r >= 0)
		r = sd_event_add_signal(m.event, NULL, SIGINT, on_term, &m);
	if (r < 0) {
		bk_log(LOG_ERR, "cannot watch signals: %s", strerror(-r));
		goto out;
	}
	r = connect_bus(&m.bus);
	if (r < 0) {
		bk_log(LOG_ERR, "cannot connect to the bus%s%s: %s", arg_bus_address ? " " : "",
		       arg_bus_address ? arg_bus_address : "", strerror(-r));
		goto out;
	}
	r = sd_bus_attach_event(m.bus, m.event, SD_EVENT_PRIORITY_NORMAL);
	if (r >= 0)
		r = bankd_manager_export(&m);
	if (r >= 0)
		r = sd_bus_add_object_manager(m.bus, NULL, BANKD_OBJECT_PATH);
	if (r >= 0)
		r = sd_bus_request_name(m.bus, BANKD_BUS_NAME, 0);
	if (r < 0) {
		bk_log(LOG_ERR, "cannot serve %s: %s", BANKD_BUS_NAME, strerror(-r));
		goto out;
	}
	bk_log(LOG_INFO, "serving %s for root '%s'", BANKD_BUS_NAME, m.root);

	r = sd_event_loop(m.event);
	if (r < 0)
		bk_log(LOG_ERR, "event loop failed: %s", strerror(-r));
out:
	m.exiting = true;
	/* A running operation ends as a killed bankctl would; the next start recovers it. */
	bankd_jobs_kill_all(&m);
	if (m.bus) {
		(void) sd_bus_flush(m.bus);
		m.bus = sd_bus_flush_close_unref(m.bus);
	}
	m.event = sd_event_unref(m.event);
	(void) close(m.host_mntns_fd);
	return r != 0 ? BK_EXIT_FAILURE : BK_EXIT_OK;
}
