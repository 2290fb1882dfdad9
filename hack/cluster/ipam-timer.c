/* A timing shim for CNI IPAM plugins, used by hack/bench-pod-ready.sh only (never by the tests
 * or the shipped manifests). Installed as <bin dir>/timed-<plugin>, e.g. timed-nv-ipam or
 * timed-host-local; a NetworkAttachmentDefinition names it as "ipam": {"type": "timed-nv-ipam"}.
 * The main plugin (macvlan) executes it exactly as it would execute the IPAM plugin; it runs
 * <bin dir>/<plugin> as a child with the same arguments, environment, stdin, stdout and stderr,
 * waits for it, appends one line to TIMING_LOG and exits with the child's status:
 *
 *   <CNI_COMMAND> <plugin> <CNI_CONTAINERID> <CNI_IFNAME> <start s.ns> <end s.ns> <exit status>
 *
 * (CLOCK_REALTIME, so the lines line up with kubectl's timestamps). The fork and wait add
 * well under a millisecond per call, which the benchmark counts as IPAM time for both plugins.
 * Build: gcc -static -Os -DTIMING_LOG='"/path/ipam-timing.log"' -o ipam-timer ipam-timer.c */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef TIMING_LOG
#error "define TIMING_LOG"
#endif

static const char *env_or_dash(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : "-";
}

int main(int argc, char **argv) {
  struct timespec t0, t1;
  char real[PATH_MAX], line[1024];
  const char *base, *plugin;
  size_t dirlen;
  int status = 0, code, fd, len;
  pid_t pid;
  (void)argc;

  clock_gettime(CLOCK_REALTIME, &t0);
  base = strrchr(argv[0], '/');
  base = base ? base + 1 : argv[0];
  if (strncmp(base, "timed-", 6) != 0 || base[6] == '\0') {
    fprintf(stderr, "ipam-timer: run me as timed-<plugin>, not %s\n", base);
    return 1;
  }
  plugin = base + 6;
  dirlen = (size_t)(base - argv[0]);
  if (dirlen + strlen(plugin) + 1 > sizeof real) return 1;
  memcpy(real, argv[0], dirlen);
  strcpy(real + dirlen, plugin);

  pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    argv[0] = real;
    execv(real, argv);
    fprintf(stderr, "ipam-timer: exec %s: %s\n", real, strerror(errno));
    _exit(127);
  }
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return 1;
  }
  clock_gettime(CLOCK_REALTIME, &t1);
  code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);

  len = snprintf(line, sizeof line, "%s %s %s %s %lld.%09ld %lld.%09ld %d\n", env_or_dash("CNI_COMMAND"),
                 plugin, env_or_dash("CNI_CONTAINERID"), env_or_dash("CNI_IFNAME"), (long long)t0.tv_sec,
                 t0.tv_nsec, (long long)t1.tv_sec, t1.tv_nsec, code);
  fd = open(TIMING_LOG, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0 && len > 0) {
    /* one write(2) per line: O_APPEND keeps concurrent calls' lines whole */
    if (write(fd, line, (size_t)(len < (int)sizeof line ? len : (int)sizeof line - 1)) < 0) {
    }
    close(fd);
  }
  return code;
}
