/* udp_batch: queued datagrams all arrive, in order; a refused one does not stop the rest. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/udp_batch.h"

static int bound_socket(struct sockaddr_in *addr) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  assert_true(fd >= 0);
  int big = 1 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  struct timeval tv = {.tv_sec = 2};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  memset(addr, 0, sizeof *addr);
  addr->sin_family = AF_INET;
  addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)addr, sizeof *addr), 0);
  socklen_t len = sizeof *addr;
  getsockname(fd, (struct sockaddr *)addr, &len);
  return fd;
}

/* Datagram i is i+1 bytes, every byte i. */
static void expect_datagrams(int fd, int first, int count) {
  uint8_t buf[2048];
  for (int i = first; i < first + count; i++) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    assert_int_equal(n, i % 200 + 1);
    assert_int_equal(buf[0], (uint8_t)i);
    assert_int_equal(buf[n - 1], (uint8_t)i);
  }
}

static void queued_datagrams_arrive_in_order_across_full_batches(void **state) {
  struct sockaddr_in to;
  int rx = bound_socket(&to), tx = socket(AF_INET, SOCK_DGRAM, 0);
  struct udp_batch *b;
  assert_int_equal(udp_batch_new(&b, tx), 0);
  int total = UDP_BATCH_MAX * 2 + 7; /* two full batches sent by add, then a flush */
  uint8_t data[256];
  for (int i = 0; i < total; i++) {
    memset(data, i, sizeof data);
    assert_int_equal(udp_batch_add(b, data, (size_t)(i % 200 + 1), (struct sockaddr *)&to), 0);
  }
  assert_int_equal(udp_batch_flush(b), 7);
  assert_int_equal(udp_batch_flush(b), 0); /* nothing left */
  expect_datagrams(rx, 0, total);
  udp_batch_free(b);
  close(rx);
  close(tx);
}

static void a_refused_datagram_does_not_stop_the_others(void **state) {
  struct sockaddr_in to, bad;
  int rx = bound_socket(&to), tx = socket(AF_INET, SOCK_DGRAM, 0);
  memset(&bad, 0, sizeof bad);
  bad.sin_family = AF_INET; /* port 0: the kernel refuses to send there */
  bad.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct udp_batch *b;
  assert_int_equal(udp_batch_new(&b, tx), 0);
  uint8_t data[256];
  for (int i = 0; i < 10; i++) {
    memset(data, i, sizeof data);
    const struct sockaddr *dest = i == 3 || i == 7 ? (struct sockaddr *)&bad : (struct sockaddr *)&to;
    udp_batch_add(b, data, (size_t)(i % 200 + 1), dest);
  }
  assert_int_equal(udp_batch_flush(b), 8);
  expect_datagrams(rx, 0, 3);
  expect_datagrams(rx, 4, 3);
  expect_datagrams(rx, 8, 2);
  udp_batch_free(b);
  close(rx);
  close(tx);
}

static void a_datagram_longer_than_a_slot_goes_alone(void **state) {
  struct sockaddr_in to;
  int rx = bound_socket(&to), tx = socket(AF_INET, SOCK_DGRAM, 0);
  struct udp_batch *b;
  assert_int_equal(udp_batch_new(&b, tx), 0);
  uint8_t big[UDP_BATCH_SLOT + 100], buf[4096];
  memset(big, 0x5a, sizeof big);
  assert_int_equal(udp_batch_add(b, big, sizeof big, (struct sockaddr *)&to), 0);
  assert_int_equal(recv(rx, buf, sizeof buf, 0), (ssize_t)sizeof big);
  assert_int_equal(udp_batch_flush(b), 0);
  udp_batch_free(b);
  close(rx);
  close(tx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(queued_datagrams_arrive_in_order_across_full_batches),
      cmocka_unit_test(a_refused_datagram_does_not_stop_the_others),
      cmocka_unit_test(a_datagram_longer_than_a_slot_goes_alone),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
