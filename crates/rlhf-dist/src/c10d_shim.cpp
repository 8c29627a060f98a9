// The C ABI between rlhf-dist and PyTorch's c10d: a TCPStore rendezvous and a Gloo process group
// (both compiled into libtorch_cpu), and the few collectives the trainers use. Every entry point
// catches C++ exceptions and hands their message back; tensors are tch's `at::Tensor*`.
#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

struct rlhf_group {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};

namespace {
void put_error(const std::exception& e, char* err, size_t len) {
  if (err != nullptr && len > 0) {
    std::string message = e.what();
    // c10 appends a C++ backtrace after the first line; the first line says what happened.
    auto newline = message.find('\n');
    if (newline != std::string::npos) message.resize(newline);
    std::strncpy(err, message.c_str(), len - 1);
    err[len - 1] = '\0';
  }
}

template <typename F>
int guarded(char* err, size_t len, F&& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    put_error(e, err, len);
    return 1;
  }
}
}  // namespace

extern "C" {

rlhf_group* rlhf_group_new(const char* host, int port, int rank, int world, long timeout_ms, char* err, size_t len) {
  rlhf_group* out = nullptr;
  guarded(err, len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions options;
    options.port = static_cast<uint16_t>(port);
    options.isServer = rank == 0;
    options.numWorkers = world;
    options.waitWorkers = true;
    options.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    auto gloo = c10d::ProcessGroupGloo::Options::create_default(timeout);
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, gloo);
    out = new rlhf_group{store, group};
  });
  return out;
}

void rlhf_group_free(rlhf_group* group) { delete group; }

int rlhf_group_all_reduce_sum(rlhf_group* group, at::Tensor* tensor, char* err, size_t len) {
  return guarded(err, len, [&] {
    std::vector<at::Tensor> tensors{*tensor};
    group->group->allreduce(tensors)->wait();
  });
}

int rlhf_group_broadcast(rlhf_group* group, at::Tensor* tensor, int root, char* err, size_t len) {
  return guarded(err, len, [&] {
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    group->group->broadcast(tensors, options)->wait();
  });
}

int rlhf_group_barrier(rlhf_group* group, char* err, size_t len) {
  return guarded(err, len, [&] { group->group->barrier()->wait(); });
}

// Gives `param` a zero gradient when it has none (a rank whose share of a step never reached it),
// so that every rank takes part in the same all-reduce.
int rlhf_ensure_grad(at::Tensor* param, char* err, size_t len) {
  return guarded(err, len, [&] {
    if (!param->grad().defined()) param->mutable_grad() = at::zeros_like(*param);
  });
}
}
