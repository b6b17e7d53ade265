/*
 * nmeter: the subset of busybox's nmeter applet the node e2e specs use
 * (test/e2e_node/container_lifecycle_pod_construction.go timestamps its log
 * lines with `nmeter -d0 '%3t' | head -n1`); Debian's busybox is built
 * without the applet. Supports -d MSEC (delay between lines; -1: one line)
 * and a format of literal text and %[N]t (local time HH:MM:SS with N
 * decimals, N <= 6). Prints until its output closes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int line(const char *fmt) {
	struct timeval tv;
	struct tm tm;
	char buf[64];
	const char *p;

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	for (p = fmt; *p; p++) {
		int n = 0;
		const char *q = p + 1;
		if (*p != '%') {
			putchar(*p);
			continue;
		}
		while (*q >= '0' && *q <= '9')
			n = n * 10 + (*q++ - '0');
		if (*q != 't') {
			putchar(*p);
			continue;
		}
		strftime(buf, sizeof buf, "%H:%M:%S", &tm);
		fputs(buf, stdout);
		if (n > 0) {
			long frac = tv.tv_usec;
			int d;
			if (n > 6)
				n = 6;
			for (d = 6; d > n; d--)
				frac /= 10;
			printf(".%0*ld", n, frac);
		}
		p = q;
	}
	putchar('\n');
	return fflush(stdout) == 0 && !ferror(stdout);
}

int main(int argc, char **argv) {
	long delay = 1000;
	const char *fmt = "%t";
	int i;

	for (i = 1; i < argc; i++) {
		if (strncmp(argv[i], "-d", 2) == 0) {
			const char *v = argv[i][2] ? argv[i] + 2 : (i + 1 < argc ? argv[++i] : "1000");
			delay = strtol(v, NULL, 10);
		} else {
			fmt = argv[i];
		}
	}
	while (line(fmt)) {
		if (delay < 0)
			break;
		if (delay > 0)
			usleep(delay * 1000);
	}
	return 0;
}
