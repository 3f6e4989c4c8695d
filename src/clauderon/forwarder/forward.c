/* clauderon-forward: the only way out of a session container.
 *
 * The container runs with no network but loopback. This program listens on
 * 127.0.0.1:<port> inside it and joins every client to the Unix socket the daemon made
 * for this session (mounted read-only), so HTTP(S)_PROXY=http://...@127.0.0.1:<port>
 * reaches the daemon's credential proxy and nothing else.
 *
 * Usage: clauderon-forward [-f] PORT SOCKET_PATH     (-f: stay in the foreground, no
 *                                                      supervisor; for benchmarks)
 *
 * Returns once it listens (exit 0) and keeps running in the background: a supervisor
 * holds the listening socket and restarts the worker if it ever dies, so the port never
 * goes away. The worker is one process, one poll() loop, non-blocking sockets and a
 * fixed buffer per direction. Static, and uses nothing that needs NSS or any file of
 * the image.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PAIRS 512
#define BUF 65536

struct half {            /* bytes read from one end, waiting to be written to the other */
  char data[BUF];
  size_t start, end;
  int eof;               /* the reading end said EOF */
  int shut;              /* the EOF was passed on (shutdown of the writing end) */
};

struct pair {
  int fd[2];             /* 0: the client (TCP), 1: the daemon (Unix) */
  struct half h[2];      /* h[i]: read from fd[i], written to fd[1-i] */
};

static struct pair *pairs[MAX_PAIRS];
static const char *socket_path;
static int serve(int listener);

static int nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static void close_pair(int i) {
  close(pairs[i]->fd[0]);
  close(pairs[i]->fd[1]);
  free(pairs[i]);
  pairs[i] = NULL;
}

static void accept_client(int listener) {
  for (;;) {
    int client = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client < 0) return;
    int slot = -1;
    for (int i = 0; i < MAX_PAIRS; i++)
      if (!pairs[i]) { slot = i; break; }
    int upstream = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, socket_path, sizeof addr.sun_path - 1);
    /* A Unix connect completes at once or fails: no need to wait for it. */
    if (slot < 0 || upstream < 0 ||
        connect(upstream, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        nonblocking(upstream) < 0) {
      if (upstream >= 0) close(upstream);
      close(client);
      continue;
    }
    int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct pair *p = calloc(1, sizeof *p);
    if (!p) { close(upstream); close(client); continue; }
    p->fd[0] = client;
    p->fd[1] = upstream;
    pairs[slot] = p;
  }
}

/* Move bytes for one direction; return -1 when the pair is finished or broken. */
static int pump(struct pair *p, int from, short rev_from, short rev_to) {
  struct half *h = &p->h[from];
  int to = 1 - from;
  if ((rev_from & (POLLIN | POLLHUP | POLLERR)) && !h->eof && h->end < BUF) {
    ssize_t n = read(p->fd[from], h->data + h->end, BUF - h->end);
    if (n > 0) h->end += (size_t)n;
    else if (n == 0) h->eof = 1;
    else if (errno != EAGAIN && errno != EINTR) return -1;
  }
  (void)rev_to;
  if (h->end > h->start) {
    ssize_t n = write(p->fd[to], h->data + h->start, h->end - h->start);
    if (n > 0) h->start += (size_t)n;
    else if (n < 0 && errno != EAGAIN && errno != EINTR) return -1;
    if (h->start == h->end) h->start = h->end = 0;
  }
  if (h->eof && h->start == h->end && !h->shut) {
    shutdown(p->fd[to], SHUT_WR);
    h->shut = 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  int foreground = argc > 1 && strcmp(argv[1], "-f") == 0;
  if (foreground) { argv++; argc--; }
  if (argc != 3) {
    fprintf(stderr, "usage: clauderon-forward [-f] PORT SOCKET_PATH\n");
    return 2;
  }
  int port = atoi(argv[1]);
  socket_path = argv[2];
  if (port <= 0 || port > 65535 || strlen(socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    fprintf(stderr, "clauderon-forward: bad port or socket path\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 ||
      listen(listener, 128) < 0) {
    perror("clauderon-forward: listen on 127.0.0.1");
    return 1;
  }
  if (foreground) return serve(listener);
  /* Listening: tell the caller (exit 0) and go on in the background. */
  pid_t pid = fork();
  if (pid < 0) { perror("clauderon-forward: fork"); return 1; }
  if (pid > 0) return 0;
  setsid();
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(null, 2); if (null > 2) close(null); }
  for (;;) {
    pid_t worker = fork();
    if (worker == 0) return serve(listener);
    if (worker > 0) while (waitpid(worker, NULL, 0) < 0 && errno == EINTR) {}
    usleep(200 * 1000);
  }
}

static int serve(int listener) {
  static struct pollfd fds[1 + 2 * MAX_PAIRS];
  static int owner[1 + 2 * MAX_PAIRS];
  for (;;) {
    int n = 0;
    fds[n].fd = listener;
    fds[n].events = POLLIN;
    owner[n++] = -1;
    for (int i = 0; i < MAX_PAIRS; i++) {
      struct pair *p = pairs[i];
      if (!p) continue;
      for (int s = 0; s < 2; s++) {
        short ev = 0;
        if (!p->h[s].eof && p->h[s].end < BUF) ev |= POLLIN;       /* room to read */
        if (p->h[1 - s].end > p->h[1 - s].start) ev |= POLLOUT;    /* bytes to write */
        fds[n].fd = p->fd[s];
        fds[n].events = ev;
        owner[n++] = i;
      }
    }
    if (poll(fds, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      perror("clauderon-forward: poll");
      return 1;
    }
    if (fds[0].revents & POLLIN) accept_client(listener);
    for (int k = 1; k < n; k += 2) {
      int i = owner[k];
      struct pair *p = pairs[i];
      if (!p) continue;
      short r0 = fds[k].revents, r1 = fds[k + 1].revents;
      if (!r0 && !r1) continue;
      /* An end that failed, or hung up after its EOF was read: nothing more can pass. */
      if ((r0 | r1) & POLLERR || ((r0 & POLLHUP) && p->h[0].eof) || ((r1 & POLLHUP) && p->h[1].eof)) {
        close_pair(i);
        continue;
      }
      if (pump(p, 0, r0, r1) < 0 || pump(p, 1, r1, r0) < 0 ||
          (p->h[0].shut && p->h[1].shut)) {
        close_pair(i);
      }
    }
  }
}
