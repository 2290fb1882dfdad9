/* The pod sandbox ("pause") process of the end-to-end cluster (hack/cluster.sh), built from
 * Debian's gcc and libc into a static binary, so no registry image is needed. It does what
 * Kubernetes' own build/pause/linux/pause.c does: hold the pod's namespaces, reap orphaned
 * children (it is PID 1 of the pod's PID namespace when that is shared), and exit 0 on
 * SIGINT/SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void sigdown(int signo) {
  (void)signo;
  _exit(0);
}

static void sigreap(int signo) {
  (void)signo;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  struct sigaction down, reap;
  int i;
  for (i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "-v") == 0) {
      printf("pause (nv-ipam e2e)\n");
      return 0;
    }
  }
  if (getpid() != 1) fprintf(stderr, "Warning: pause should be the first process\n");
  memset(&down, 0, sizeof down);
  down.sa_handler = sigdown;
  if (sigaction(SIGINT, &down, NULL) < 0 || sigaction(SIGTERM, &down, NULL) < 0) return 1;
  memset(&reap, 0, sizeof reap);
  reap.sa_handler = sigreap;
  reap.sa_flags = SA_NOCLDSTOP;
  if (sigaction(SIGCHLD, &reap, NULL) < 0) return 2;
  for (;;) pause();
  return 42;
}
