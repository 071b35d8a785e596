/*
 * plain.c: an unmodified C program (no crac in it) for `crac run`.
 *
 * It holds 64 MiB of data, a worker thread that counts, and a pipe with a
 * message queued in it. On SIGUSR1 it checks all three itself and prints
 * "check PID: ok ..." (or what is wrong); SIGTERM ends it.
 *
 *   gcc -O2 -pthread -o plain examples/c/plain.c
 *   crac run --checkpoint-to /tmp/plain-image -- ./plain &
 *   kill -USR1 PID                   # check PID: ok ...
 *   crac checkpoint PID              # the process exits
 *   crac restore /tmp/plain-image &  # same PID
 *   kill -USR1 PID                   # check PID: ok ...
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DATA_LEN (64u << 20)
#define MESSAGE "carried across checkpoints"

static uint64_t *data;
static volatile uint64_t ticks;
static volatile sig_atomic_t check_requested;
static int pipe_fds[2];

/* The value at index i: a xorshift of i, so the data need not be kept twice. */
static uint64_t value(uint64_t i)
{
    uint64_t x = i * 0x9e3779b97f4a7c15u + 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        ticks++;
        usleep(1000);
    }
    return NULL;
}

static void on_usr1(int sig)
{
    (void)sig;
    check_requested = 1;
}

static void check(void)
{
    size_t n = DATA_LEN / sizeof *data;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (data[i] != value(i)) {
            printf("check %d: data differs at index %zu\n", (int)getpid(), i);
            return;
        }
        sum += data[i];
    }
    uint64_t t0 = ticks;
    usleep(50000);
    if (ticks == t0) {
        printf("check %d: the worker thread does not run\n", (int)getpid());
        return;
    }
    char buf[64] = {0};
    ssize_t got = read(pipe_fds[0], buf, sizeof buf - 1);
    if (got != (ssize_t)strlen(MESSAGE) || strcmp(buf, MESSAGE) != 0) {
        printf("check %d: the pipe holds %zd bytes: %s\n", (int)getpid(), got, buf);
        return;
    }
    /* Put the message back for the next check. */
    if (write(pipe_fds[1], MESSAGE, strlen(MESSAGE)) < 0)
        return;
    printf("check %d: ok, 64 MiB checksum %016llx\n", (int)getpid(), (unsigned long long)sum);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    size_t n = DATA_LEN / sizeof *data;
    data = malloc(DATA_LEN);
    if (!data || pipe(pipe_fds) != 0)
        return 1;
    for (size_t i = 0; i < n; i++)
        data[i] = value(i);
    if (write(pipe_fds[1], MESSAGE, strlen(MESSAGE)) < 0)
        return 1;
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    signal(SIGUSR1, on_usr1);
    printf("ready PID: %d\n", (int)getpid());
    for (;;) {
        if (check_requested) {
            check_requested = 0;
            check();
        }
        usleep(10000);
    }
}
