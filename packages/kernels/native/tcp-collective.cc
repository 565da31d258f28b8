// TCP ring all-reduce for tensor-parallel ranks on different hosts (ADR 0018): the same
// Collective contract as shm-collective.cc, over one TCP connection to the next rank of the
// ring and one from the previous rank. All-reduce is the classic ring: reduce-scatter (T − 1
// steps: send one chunk on, add the one received) then all-gather (T − 1 steps: pass the
// finished chunks on). Each chunk's sum is computed by exactly one rank and then copied, so
// every rank ends with bit-identical values. Every send and receive of a step runs
// concurrently under poll() with the op's deadline: a dead or stalled peer fails the op.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "napi-args.h"

namespace kiln {
namespace {

struct Ring {
  int rank = 0;
  int size = 1;
  int toNext = -1;    // connection to rank + 1
  int fromPrev = -1;  // connection from rank − 1
  std::vector<float> scratch;
};

double nowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void closeRing(Ring* ring) {
  if (ring->toNext >= 0) close(ring->toNext);
  if (ring->fromPrev >= 0) close(ring->fromPrev);
  ring->toNext = ring->fromPrev = -1;
}

[[noreturn]] void fail(const Napi::Env& env, const std::string& what) {
  Napi::Error err = Napi::Error::New(env, "tensor-parallel TCP ring: " + what);
  err.Set("code", Napi::String::New(env, "WORKER_LOST"));
  throw err;
}

// Sends `sendLen` bytes to the next rank while receiving `recvLen` from the previous one.
void sendRecv(const Napi::Env& env, Ring* ring, const char* out, size_t sendLen, char* in,
              size_t recvLen, double deadline) {
  size_t sent = 0, got = 0;
  while (sent < sendLen || got < recvLen) {
    pollfd fds[2] = {{ring->toNext, static_cast<short>(sent < sendLen ? POLLOUT : 0), 0},
                     {ring->fromPrev, static_cast<short>(got < recvLen ? POLLIN : 0), 0}};
    int waitMs = static_cast<int>(deadline - nowMs());
    if (waitMs <= 0) fail(env, "a peer did not keep up before the deadline");
    int ready = poll(fds, 2, waitMs);
    if (ready < 0 && errno != EINTR) fail(env, std::string("poll: ") + strerror(errno));
    if (fds[0].revents & (POLLERR | POLLHUP)) fail(env, "the next rank closed the connection");
    if (fds[0].revents & POLLOUT) {
      ssize_t n = send(ring->toNext, out + sent, sendLen - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && errno != EAGAIN && errno != EINTR) fail(env, "the next rank is gone");
      if (n > 0) sent += n;
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = recv(ring->fromPrev, in + got, recvLen - got, MSG_DONTWAIT);
      if (n == 0) fail(env, "the previous rank closed the connection");
      if (n < 0 && errno != EAGAIN && errno != EINTR) fail(env, "the previous rank is gone");
      if (n > 0) got += n;
    }
  }
}

int connectWithin(const std::string& host, int port, double deadline) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) return -1;
  int fd = -1;
  while (nowMs() < deadline) {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, res->ai_addr, res->ai_addrlen) == 0) break;
    close(fd);
    fd = -1;
    usleep(20000);  // the next rank is not listening yet
  }
  freeaddrinfo(res);
  return fd;
}

// open(rank, size, listenPort, nextHost, nextPort, timeoutMs) → handle. Listens on
// listenPort (all interfaces), connects to the next rank, accepts the previous one.
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int rank = static_cast<int>(dimArg(info, 0, "rank"));
  int size = static_cast<int>(dimArg(info, 1, "size"));
  int listenPort = static_cast<int>(dimArg(info, 2, "listenPort"));
  std::string nextHost = info[3].As<Napi::String>().Utf8Value();
  int nextPort = static_cast<int>(dimArg(info, 4, "nextPort"));
  double deadline = nowMs() + info[5].As<Napi::Number>().DoubleValue();
  if (size < 2 || rank >= size) throw Napi::RangeError::New(env, "a ring needs size ≥ 2, rank < size");
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(listenPort);
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener, 1) != 0) {
    close(listener);
    throw Napi::Error::New(env, "listen on port " + std::to_string(listenPort) + ": " + strerror(errno));
  }
  auto* ring = new Ring();
  ring->rank = rank;
  ring->size = size;
  ring->toNext = connectWithin(nextHost, nextPort, deadline);
  pollfd pfd{listener, POLLIN, 0};
  int waitMs = static_cast<int>(deadline - nowMs());
  if (ring->toNext >= 0 && waitMs > 0 && poll(&pfd, 1, waitMs) == 1) {
    ring->fromPrev = accept(listener, nullptr, nullptr);
  }
  close(listener);
  if (ring->toNext < 0 || ring->fromPrev < 0) {
    closeRing(ring);
    delete ring;
    fail(env, "the ring did not connect before the deadline");
  }
  setsockopt(ring->toNext, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return Napi::External<Ring>::New(env, ring, [](Napi::Env, Ring* r) {
    closeRing(r);
    delete r;
  });
}

Ring* ringArg(const Napi::CallbackInfo& info) {
  if (!info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "ring must be a handle");
  Ring* ring = info[0].As<Napi::External<Ring>>().Data();
  if (ring->toNext < 0) throw Napi::Error::New(info.Env(), "the ring is closed");
  return ring;
}

// allReduce(ring, buf, n, timeoutMs)
Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Ring* ring = ringArg(info);
  Napi::Float32Array buf = float32Arg(info, 1, "buf");
  int64_t n = dimArg(info, 2, "n");
  requireLen(env, buf, n, "buf");
  double deadline = nowMs() + info[3].As<Napi::Number>().DoubleValue();
  const int t = ring->size;
  float* data = buf.Data();
  auto chunkStart = [&](int c) { return (n * c) / t; };
  auto chunkLen = [&](int c) { return chunkStart(c + 1) - chunkStart(c); };
  ring->scratch.resize(n / t + 1);
  float* in = ring->scratch.data();
  try {
    // Reduce-scatter: after step s, chunk (rank − s − 1) mod t holds s + 2 ranks' sum here.
    for (int s = 0; s < t - 1; s++) {
      int sendC = ((ring->rank - s) % t + t) % t;
      int recvC = ((ring->rank - s - 1) % t + t) % t;
      sendRecv(env, ring, reinterpret_cast<const char*>(data + chunkStart(sendC)),
               chunkLen(sendC) * sizeof(float), reinterpret_cast<char*>(in),
               chunkLen(recvC) * sizeof(float), deadline);
      float* dst = data + chunkStart(recvC);
      for (int64_t i = 0; i < chunkLen(recvC); i++) dst[i] += in[i];
    }
    // All-gather: chunk (rank + 1) mod t is complete here; pass the complete chunks around.
    for (int s = 0; s < t - 1; s++) {
      int sendC = ((ring->rank + 1 - s) % t + t) % t;
      int recvC = ((ring->rank - s) % t + t) % t;
      sendRecv(env, ring, reinterpret_cast<const char*>(data + chunkStart(sendC)),
               chunkLen(sendC) * sizeof(float),
               reinterpret_cast<char*>(data + chunkStart(recvC)),
               chunkLen(recvC) * sizeof(float), deadline);
    }
  } catch (...) {
    closeRing(ring);  // a half-finished op leaves the byte streams out of step
    throw;
  }
  return env.Undefined();
}

// Sends or receives exactly len bytes on fd before the deadline (one direction only).
void transferAll(const Napi::Env& env, int fd, char* buf, size_t len, bool isSend, double deadline) {
  size_t done = 0;
  while (done < len) {
    pollfd pfd{fd, static_cast<short>(isSend ? POLLOUT : POLLIN), 0};
    int waitMs = static_cast<int>(deadline - nowMs());
    if (waitMs <= 0) fail(env, "a step message did not pass before the deadline");
    if (poll(&pfd, 1, waitMs) < 0 && errno != EINTR) fail(env, "poll failed");
    if (pfd.revents & (POLLERR | POLLHUP | POLLNVAL) && isSend) fail(env, "the next rank is gone");
    if (!(pfd.revents & (isSend ? POLLOUT : (POLLIN | POLLHUP | POLLERR)))) continue;
    ssize_t n = isSend ? send(fd, buf + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT)
                       : recv(fd, buf + done, len - done, MSG_DONTWAIT);
    if (n == 0 && !isSend) fail(env, "the previous rank closed the connection");
    if (n < 0 && errno != EAGAIN && errno != EINTR) fail(env, "a peer is gone");
    if (n > 0) done += n;
  }
}

// broadcast(ring, bytes | null, idleTimeoutMs, timeoutMs): the step rank 0 forwards, passed
// along the ring. Rank 0 sends bytes and returns null. The others wait up to idleTimeoutMs for
// a message to start (null when none did: nothing was consumed), then receive it within
// timeoutMs, pass it on to the next rank (unless the last) and return it.
Napi::Value BroadcastRing(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Ring* ring = ringArg(info);
  double idleMs = info[2].As<Napi::Number>().DoubleValue();
  double timeoutMs = info[3].As<Napi::Number>().DoubleValue();
  try {
    if (ring->rank == 0) {
      Napi::Uint8Array bytes = info[1].As<Napi::Uint8Array>();
      uint32_t len = static_cast<uint32_t>(bytes.ByteLength());
      double deadline = nowMs() + timeoutMs;
      transferAll(env, ring->toNext, reinterpret_cast<char*>(&len), 4, true, deadline);
      transferAll(env, ring->toNext, reinterpret_cast<char*>(bytes.Data()), len, true, deadline);
      return env.Null();
    }
    pollfd pfd{ring->fromPrev, POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(idleMs)) == 0) return env.Null();
    double deadline = nowMs() + timeoutMs;
    uint32_t len = 0;
    transferAll(env, ring->fromPrev, reinterpret_cast<char*>(&len), 4, false, deadline);
    Napi::Uint8Array out = Napi::Uint8Array::New(env, len);
    transferAll(env, ring->fromPrev, reinterpret_cast<char*>(out.Data()), len, false, deadline);
    if (ring->rank != ring->size - 1) {
      transferAll(env, ring->toNext, reinterpret_cast<char*>(&len), 4, true, deadline);
      transferAll(env, ring->toNext, reinterpret_cast<char*>(out.Data()), len, true, deadline);
    }
    return out;
  } catch (...) {
    closeRing(ring);
    throw;
  }
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  if (info[0].IsExternal()) closeRing(info[0].As<Napi::External<Ring>>().Data());
  return info.Env().Undefined();
}

}  // namespace

void registerTcpCollective(Napi::Env env, Napi::Object exports) {
  Napi::Object tcp = Napi::Object::New(env);
  tcp.Set("open", Napi::Function::New(env, Open, "open"));
  tcp.Set("allReduce", Napi::Function::New(env, AllReduce, "allReduce"));
  tcp.Set("broadcast", Napi::Function::New(env, BroadcastRing, "broadcast"));
  tcp.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("tcp", tcp);
}

}  // namespace kiln
