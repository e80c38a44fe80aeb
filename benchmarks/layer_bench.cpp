// Benchmarks of mfuse's layers and of whole nets, linked against the fork's libcaffe (issue 9).
//
//   layer_bench [--cpu] [--gpu ID] --out FILE.jsonl [--reps 20] [--warmup 5]
//               [--suites fusion,floor,amplify,memcpy,parity] [--small]
//       MultiplicativeFusion (the layer) against the stock composition (2x Convolution 1x1 or
//       InnerProduct with a constant bias 1 (lr_mult 0), 2x ReLU for RELU, Eltwise PROD), the bare GEMMs
//       the layer must do (the floor), FlowAmplify against a device-to-device copy of the same bytes,
//       CPU/GPU parity of both layers. --small: the CPU shapes (see CpuFusionShapes).
//   layer_bench [--cpu] [--gpu ID] --out FILE.jsonl --net MODEL.prototxt --name NAME [--phase TRAIN|TEST]
//               [--batch N] [--forward-only] [--reps 20] [--warmup 5]
//       One whole net: Net::Forward + Net::Backward per iteration (what `caffe time` measures, per
//       iteration and with a median instead of a mean). --batch overrides the first dimension of every
//       Input and DummyData shape.
//
// Every record is one JSON object per line appended to --out; a short table goes to stdout. Times are
// medians of --reps timed repetitions after --warmup untimed ones, taken with CUDA events on the GPU
// (std::chrono::steady_clock on the CPU). Memory: device memory in use (cudaMemGetInfo) after the
// warm-up minus before the net was built, i.e. everything the net allocated, inputs included; on the CPU
// the heap bytes in use (mallinfo2) in the same way.
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "caffe/caffe.hpp"
#include "caffe/layer_factory.hpp"
#include "caffe/layers/multiplicative_fusion_layer.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/upgrade_proto.hpp"
#include "google/protobuf/text_format.h"

#ifndef CPU_ONLY
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif

using caffe::Blob;
using caffe::Caffe;
using caffe::Layer;
using caffe::LayerParameter;
using caffe::Net;
using caffe::NetParameter;

namespace {

// ---------------------------------------------------------------------------------------------------------
// Options, output

struct Options {
  bool cpu = false;
  int gpu = 0;
  std::string out;
  int reps = 20;
  int warmup = 5;
  std::string suites = "fusion,floor,amplify,memcpy,parity";
  bool small = false;
  std::string net;
  std::string name;
  std::string phase = "TRAIN";
  int batch = 0;
  bool forward_only = false;
};

void Usage(const char* message) {
  std::cerr << "layer_bench: " << message << "\n"
            << "usage: layer_bench [--cpu] [--gpu ID] --out FILE.jsonl [--reps N] [--warmup N]\n"
            << "                   [--suites fusion,floor,amplify,memcpy,parity] [--small]\n"
            << "       layer_bench [--cpu] [--gpu ID] --out FILE.jsonl --net MODEL.prototxt --name NAME\n"
            << "                   [--phase TRAIN|TEST] [--batch N] [--forward-only] [--reps N] [--warmup N]\n";
  std::exit(2);
}

int ParseInt(const std::string& flag, const char* value) {
  char* end = NULL;
  const long parsed = std::strtol(value, &end, 10);  // NOLINT(runtime/int)
  if (*value == '\0' || *end != '\0' || parsed < 0 || parsed > 1000000) {
    Usage((flag + " needs a non-negative integer, got '" + value + "'").c_str());
  }
  return static_cast<int>(parsed);
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) Usage((a + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--cpu") o.cpu = true;
    else if (a == "--small") o.small = true;
    else if (a == "--forward-only") o.forward_only = true;
    else if (a == "--gpu") o.gpu = ParseInt(a, value());
    else if (a == "--out") o.out = value();
    else if (a == "--reps") o.reps = ParseInt(a, value());
    else if (a == "--warmup") o.warmup = ParseInt(a, value());
    else if (a == "--suites") o.suites = value();
    else if (a == "--net") o.net = value();
    else if (a == "--name") o.name = value();
    else if (a == "--phase") o.phase = value();
    else if (a == "--batch") o.batch = ParseInt(a, value());
    else Usage(("unknown argument '" + a + "'").c_str());
  }
  if (o.out.empty()) Usage("--out is required");
  if (o.reps < 1) Usage("--reps must be at least 1");
  if (o.phase != "TRAIN" && o.phase != "TEST") Usage("--phase must be TRAIN or TEST");
  if (!o.net.empty() && o.name.empty()) o.name = o.net;
#ifdef CPU_ONLY
  if (!o.cpu) Usage("this binary is built without CUDA: pass --cpu");
#endif
  return o;
}

bool HasSuite(const Options& o, const std::string& suite) {
  std::stringstream list(o.suites);
  std::string item;
  while (std::getline(list, item, ',')) {
    if (item == suite) return true;
  }
  return false;
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// One JSON object, keys in insertion order.
class Record {
 public:
  Record& Set(const std::string& key, const std::string& value) {
    return Raw(key, "\"" + JsonEscape(value) + "\"");
  }
  Record& Set(const std::string& key, const char* value) { return Set(key, std::string(value)); }
  Record& Set(const std::string& key, double value) {
    if (!std::isfinite(value)) return Raw(key, "null");
    std::ostringstream s;
    s << std::setprecision(6) << value;
    return Raw(key, s.str());
  }
  Record& Set(const std::string& key, int value) { return Raw(key, std::to_string(value)); }
  Record& Set(const std::string& key, bool value) { return Raw(key, value ? "true" : "false"); }
  Record& Set(const std::string& key, const std::vector<int>& values) {
    std::string s = "[";
    for (size_t i = 0; i < values.size(); ++i) s += (i ? ", " : "") + std::to_string(values[i]);
    return Raw(key, s + "]");
  }
  std::string Json() const { return "{" + body_ + "}"; }

 private:
  Record& Raw(const std::string& key, const std::string& value) {
    body_ += (body_.empty() ? "\"" : ", \"") + JsonEscape(key) + "\": " + value;
    return *this;
  }
  std::string body_;
};

class Output {
 public:
  explicit Output(const std::string& path) : file_(path.c_str(), std::ios::app) {
    if (!file_) {
      std::cerr << "layer_bench: cannot open " << path << " for appending\n";
      std::exit(1);
    }
  }
  void Write(const Record& record, const std::string& table_row) {
    file_ << record.Json() << "\n";
    file_.flush();
    std::cout << table_row << std::endl;
  }

 private:
  std::ofstream file_;
};

std::string Format(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string Format(const char* format, ...) {
  char buffer[512];
  va_list args;
  va_start(args, format);
  vsnprintf(buffer, sizeof(buffer), format, args);
  va_end(args);
  return buffer;
}

// ---------------------------------------------------------------------------------------------------------
// Timing and memory

struct Timing {
  double fwd_ms, bwd_ms, total_ms, total_min_ms, total_max_ms;
  int reps;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void Synchronize(bool gpu) {
#ifndef CPU_ONLY
  if (gpu) CUDA_CHECK(cudaDeviceSynchronize());
#endif
}

// One thing to time: fwd() then bwd() (bwd may be empty).
struct Candidate {
  std::function<void()> fwd, bwd;
  std::vector<double> f, b, t;  // per timed repetition, ms
};

// Times the candidates interleaved: each repetition runs every candidate once, in an order rotated from one
// repetition to the next, so a slow phase of a shared machine hits all of them alike and their ratios hold.
void MeasureInterleaved(std::vector<Candidate>* candidates, const Options& o) {
  const bool gpu = !o.cpu;
  const size_t n = candidates->size();
  for (int i = 0; i < o.warmup; ++i) {
    for (Candidate& c : *candidates) {
      c.fwd();
      if (c.bwd) c.bwd();
    }
  }
  Synchronize(gpu);
#ifndef CPU_ONLY
  cudaEvent_t e0, e1, e2;
  if (gpu) {
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    CUDA_CHECK(cudaEventCreate(&e2));
  }
#endif
  for (int rep = 0; rep < o.reps; ++rep) {
    for (size_t j = 0; j < n; ++j) {
      Candidate& c = (*candidates)[(rep + j) % n];
      if (gpu) {
#ifndef CPU_ONLY
        CUDA_CHECK(cudaEventRecord(e0));
        c.fwd();
        CUDA_CHECK(cudaEventRecord(e1));
        if (c.bwd) c.bwd();
        CUDA_CHECK(cudaEventRecord(e2));
        CUDA_CHECK(cudaEventSynchronize(e2));
        float ms_f = 0, ms_b = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms_f, e0, e1));
        CUDA_CHECK(cudaEventElapsedTime(&ms_b, e1, e2));
        c.f.push_back(ms_f);
        c.b.push_back(ms_b);
        c.t.push_back(ms_f + ms_b);
#endif
      } else {
        typedef std::chrono::steady_clock Clock;
        const Clock::time_point t0 = Clock::now();
        c.fwd();
        const Clock::time_point t1 = Clock::now();
        if (c.bwd) c.bwd();
        const Clock::time_point t2 = Clock::now();
        c.f.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        c.b.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
        c.t.push_back(std::chrono::duration<double, std::milli>(t2 - t0).count());
      }
    }
  }
#ifndef CPU_ONLY
  if (gpu) {
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    CUDA_CHECK(cudaEventDestroy(e2));
  }
#endif
}

Timing Summarize(const Candidate& c) {
  Timing r;
  r.fwd_ms = Median(c.f);
  r.bwd_ms = Median(c.b);
  r.total_ms = Median(c.t);
  r.total_min_ms = *std::min_element(c.t.begin(), c.t.end());
  r.total_max_ms = *std::max_element(c.t.begin(), c.t.end());
  r.reps = static_cast<int>(c.t.size());
  return r;
}

// Times fwd() then bwd() (bwd may be empty) alone.
Timing Measure(const std::function<void()>& fwd, const std::function<void()>& bwd, const Options& o) {
  std::vector<Candidate> one(1);
  one[0].fwd = fwd;
  one[0].bwd = bwd;
  MeasureInterleaved(&one, o);
  return Summarize(one[0]);
}

void SetTiming(Record* r, const Timing& t) {
  r->Set("fwd_ms", t.fwd_ms).Set("bwd_ms", t.bwd_ms).Set("total_ms", t.total_ms)
      .Set("total_min_ms", t.total_min_ms).Set("total_max_ms", t.total_max_ms).Set("reps", t.reps);
}

// Bytes in use: device memory (GPU) or the heap (CPU).
double MemoryInUse(bool gpu) {
#ifndef CPU_ONLY
  if (gpu) {
    CUDA_CHECK(cudaDeviceSynchronize());
    size_t free_bytes = 0, total_bytes = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    return static_cast<double>(total_bytes - free_bytes);
  }
#endif
  const struct mallinfo2 m = mallinfo2();
  return static_cast<double>(m.uordblks + m.hblkhd);
}

const double kMiB = 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------------------------
// Data

void FillGaussian(float* data, int count, float std_dev) {
  caffe::caffe_rng_gaussian<float>(count, 0.f, std_dev, data);
}

void FillUniform(float* data, int count, float low, float high) {
  caffe::caffe_rng_uniform<float>(count, low, high, data);
}

bool HasLayerType(const std::string& type) {
  const std::vector<std::string> types = caffe::LayerRegistry<float>::LayerTypeList();
  return std::find(types.begin(), types.end(), type) != types.end();
}

// ---------------------------------------------------------------------------------------------------------
// MultiplicativeFusion: the layer, the composition of stock layers, the GEMM floor

struct FusionShape {
  std::string name;
  int n, c, k, h, w;  // h = w = 0: 2-D (fc) bottoms N x C
  bool fc() const { return h == 0; }
  int hw() const { return fc() ? 1 : h * w; }
  // Two streams of C channels each: forward Z_s = W_s X_s, backward dW_s and dX_s, 2 flops per MAC.
  double Flops() const { return 2.0 * 3.0 * 2.0 * n * static_cast<double>(k) * c * hw(); }
  std::vector<int> InputShape() const {
    return fc() ? std::vector<int>{n, c} : std::vector<int>{n, c, h, w};
  }
};

// The shapes: VGG19 conv5 (N=32, 512+512 -> 2048, 14x14), pool5 (7x7), fc7 (4096+4096 -> 4096).
std::vector<FusionShape> GpuFusionShapes() {
  return {{"conv5", 32, 512, 2048, 14, 14}, {"pool5", 32, 512, 2048, 7, 7}, {"fc7", 32, 4096, 4096, 0, 0}};
}

// Smaller batches for 2 CPU cores; channels, K and spatial sizes as on the GPU.
std::vector<FusionShape> CpuFusionShapes() {
  return {{"conv5", 4, 512, 2048, 14, 14}, {"pool5", 8, 512, 2048, 7, 7}, {"fc7", 32, 4096, 4096, 0, 0}};
}

std::string InputLayer(const std::string& name, const std::vector<int>& shape) {
  std::string dims;
  for (int d : shape) dims += " dim: " + std::to_string(d);
  return "layer { name: \"" + name + "\" type: \"Input\" top: \"" + name + "\" input_param { shape {" + dims +
         " } } }\n";
}

std::string FusionNet(const FusionShape& s, const std::string& activation) {
  return "name: \"fusion_layer\" force_backward: true\n" + InputLayer("a", s.InputShape()) +
         InputLayer("b", s.InputShape()) +
         "layer { name: \"fusion\" type: \"MultiplicativeFusion\" bottom: \"a\" bottom: \"b\" top: \"fused\"\n"
         "  param { lr_mult: 1 } param { lr_mult: 1 }\n"
         "  multiplicative_fusion_param { num_output: " + std::to_string(s.k) +
         " bias_value: 1 activation: " + activation + " weight_filler { type: \"xavier\" } } }\n";
}

// The authors' composition: per stream a 1x1 Convolution (InnerProduct for 2-D) whose bias is the
// constant 1 (filler 1, lr_mult 0), a ReLU when activation is RELU, then Eltwise PROD.
std::string CompositionNet(const FusionShape& s, const std::string& activation) {
  std::string net = "name: \"fusion_composition\" force_backward: true\n" + InputLayer("a", s.InputShape()) +
                    InputLayer("b", s.InputShape());
  const std::string k = std::to_string(s.k);
  for (const std::string stream : {"a", "b"}) {
    const std::string z = "z" + stream;
    if (s.fc()) {
      net += "layer { name: \"proj_" + stream + "\" type: \"InnerProduct\" bottom: \"" + stream +
             "\" top: \"" + z + "\"\n  param { lr_mult: 1 } param { lr_mult: 0 }\n"
             "  inner_product_param { num_output: " + k +
             " weight_filler { type: \"xavier\" } bias_filler { type: \"constant\" value: 1 } } }\n";
    } else {
      net += "layer { name: \"proj_" + stream + "\" type: \"Convolution\" bottom: \"" + stream +
             "\" top: \"" + z + "\"\n  param { lr_mult: 1 } param { lr_mult: 0 }\n"
             "  convolution_param { num_output: " + k + " kernel_size: 1"
             " weight_filler { type: \"xavier\" } bias_filler { type: \"constant\" value: 1 } } }\n";
    }
    if (activation == "RELU") {
      net += "layer { name: \"relu_" + stream + "\" type: \"ReLU\" bottom: \"" + z + "\" top: \"" + z +
             "\" }\n";
    }
  }
  return net + "layer { name: \"prod\" type: \"Eltwise\" bottom: \"za\" bottom: \"zb\" top: \"fused\"\n"
               "  eltwise_param { operation: PROD } }\n";
}

// A net from prototxt text. force_backward (there is no loss) would also turn on the gradients of
// parameters whose lr_mult is 0 (the composition's constant biases); they are turned off again here,
// as a net trained with a loss would have them.
std::unique_ptr<Net<float> > MakeNet(const std::string& text) {
  NetParameter param;
  CHECK(google::protobuf::TextFormat::ParseFromString(text, &param)) << "bad net text:\n" << text;
  param.mutable_state()->set_phase(caffe::TRAIN);
  std::unique_ptr<Net<float> > net(new Net<float>(param));
  for (const auto& layer : net->layers()) {
    const LayerParameter& lp = layer->layer_param();
    for (int j = 0; j < lp.param_size() && j < static_cast<int>(layer->blobs().size()); ++j) {
      if (lp.param(j).lr_mult() == 0) layer->set_param_propagate_down(j, false);
    }
  }
  return net;
}

void FillFusionNet(Net<float>* net, float top_diff_std) {
  for (const char* name : {"a", "b"}) {
    Blob<float>* blob = net->blob_by_name(name).get();
    FillGaussian(blob->mutable_cpu_data(), blob->count(), 1.f);
  }
  Blob<float>* top = net->blob_by_name("fused").get();
  FillGaussian(top->mutable_cpu_diff(), top->count(), top_diff_std);
}

// The layer's reorder of N x C x HW to C x N x HW (and back), on the CPU or GPU.
void SwapLeadingAxes(bool gpu, int A, int B, int L, const float* in, float* out) {
#ifndef CPU_ONLY
  if (gpu) {
    caffe::caffe_gpu_swap_leading_axes(A, B, L, in, out);
    return;
  }
#endif
  caffe::caffe_cpu_swap_leading_axes(A, B, L, in, out);
}

void Gemm(bool gpu, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, const float* A, const float* B,
          float beta, float* C) {
#ifndef CPU_ONLY
  if (gpu) {
    caffe::caffe_gpu_gemm<float>(ta, tb, M, N, K, 1.f, A, B, beta, C);
    return;
  }
#endif
  caffe::caffe_cpu_gemm<float>(ta, tb, M, N, K, 1.f, A, B, beta, C);
}

// One stream's buffers for the floor: W (K x C), X (C x N*HW or N x C x HW), Z and dZ (K x N*HW or
// N x K x HW), dW, dX. The layouts differ between the variants but the sizes do not.
struct FloorStream {
  Blob<float> w, x, z, dz, dw, dx, scratch;
  explicit FloorStream(const FusionShape& s)
      : w(std::vector<int>{s.k, s.c}), x(std::vector<int>{s.n * s.hw(), s.c}), z(std::vector<int>{s.n * s.hw(), s.k}),
        dz(std::vector<int>{s.n * s.hw(), s.k}), dw(std::vector<int>{s.k, s.c}),
        dx(std::vector<int>{s.n * s.hw(), s.c}), scratch(std::vector<int>{s.n * s.hw(), s.c}) {
    for (Blob<float>* b : {&w, &x, &dz}) FillGaussian(b->mutable_cpu_data(), b->count(), 1.f);
  }
};

typedef std::vector<std::unique_ptr<FloorStream> > FloorStreams;

float* Mutable(Blob<float>* b, bool gpu) { return gpu ? b->mutable_gpu_data() : b->mutable_cpu_data(); }
const float* Data(Blob<float>* b, bool gpu) { return gpu ? b->gpu_data() : b->cpu_data(); }

// The GEMMs of the layer's forward and backward, nothing else, on the buffers of `streams`:
//   ideal: per stream three single GEMMs over all N*HW columns (Z = W X, dW = dZ X^T, dX = W^T dZ), the best
//          any layout allows for these FLOPs;
//   layer_calls: the calls the layer makes on NCHW data: per stream, X reordered to C x N*HW, then Z = W X and
//          dW = dZ X^T as single GEMMs, dX = W^T dZ as one GEMM into C x N*HW reordered to NCHW (the reorders are
//          the layer's own function, caffe_{cpu,gpu}_swap_leading_axes); 2-D: the layer's N x K = (N x C) W^T
//          orientation, no reorder.
Candidate FloorWork(const FusionShape& s, const std::string& variant, FloorStreams* streams, bool gpu) {
  const int K = s.k, C = s.c, HW = s.hw(), N = s.n, NHW = s.n * s.hw();
  Candidate c;
  if (variant == "ideal") {
    c.fwd = [=]() {
      for (auto& st : *streams) {
        Gemm(gpu, CblasNoTrans, CblasNoTrans, K, NHW, C, Data(&st->w, gpu), Data(&st->x, gpu), 0.f,
             Mutable(&st->z, gpu));
      }
    };
    c.bwd = [=]() {
      for (auto& st : *streams) {
        Gemm(gpu, CblasNoTrans, CblasTrans, K, C, NHW, Data(&st->dz, gpu), Data(&st->x, gpu), 1.f,
             Mutable(&st->dw, gpu));
        Gemm(gpu, CblasTrans, CblasNoTrans, C, NHW, K, Data(&st->w, gpu), Data(&st->dz, gpu), 0.f,
             Mutable(&st->dx, gpu));
      }
    };
  } else if (s.fc()) {  // the layer's N x K = (N x C) W^T orientation
    c.fwd = [=]() {
      for (auto& st : *streams) {
        Gemm(gpu, CblasNoTrans, CblasTrans, N, K, C, Data(&st->x, gpu), Data(&st->w, gpu), 0.f,
             Mutable(&st->z, gpu));
      }
    };
    c.bwd = [=]() {
      for (auto& st : *streams) {
        Gemm(gpu, CblasTrans, CblasNoTrans, K, C, N, Data(&st->dz, gpu), Data(&st->x, gpu), 1.f,
             Mutable(&st->dw, gpu));
        Gemm(gpu, CblasNoTrans, CblasNoTrans, N, C, K, Data(&st->dz, gpu), Data(&st->w, gpu), 0.f,
             Mutable(&st->dx, gpu));
      }
    };
  } else {
    // x holds X as N x C x HW; dx receives dX as N x C x HW; the reordered copies go through `scratch`.
    c.fwd = [=]() {
      for (auto& st : *streams) {
        SwapLeadingAxes(gpu, N, C, HW, Data(&st->x, gpu), Mutable(&st->scratch, gpu));
        Gemm(gpu, CblasNoTrans, CblasNoTrans, K, NHW, C, Data(&st->w, gpu), Data(&st->scratch, gpu), 0.f,
             Mutable(&st->z, gpu));
      }
    };
    c.bwd = [=]() {
      for (auto& st : *streams) {
        SwapLeadingAxes(gpu, N, C, HW, Data(&st->x, gpu), Mutable(&st->scratch, gpu));
        Gemm(gpu, CblasNoTrans, CblasTrans, K, C, NHW, Data(&st->dz, gpu), Data(&st->scratch, gpu), 1.f,
             Mutable(&st->dw, gpu));
        Gemm(gpu, CblasTrans, CblasNoTrans, C, NHW, K, Data(&st->w, gpu), Data(&st->dz, gpu), 0.f,
             Mutable(&st->scratch, gpu));
        SwapLeadingAxes(gpu, C, N, HW, Data(&st->scratch, gpu), Mutable(&st->dx, gpu));
      }
    };
  }
  return c;
}

void SetShape(Record* r, const FusionShape& s) {
  r->Set("shape", s.name).Set("n", s.n).Set("c", std::vector<int>{s.c, s.c}).Set("k", s.k)
      .Set("h", s.fc() ? 1 : s.h).Set("w", s.fc() ? 1 : s.w);
}

// The memory of the two inputs and the fused top, data + diff each, as the device (or the heap) allocates them.
double IoBytes(const FusionShape& s, bool gpu) {
  const double before = MemoryInUse(gpu);
  const std::vector<int> top_shape = s.fc() ? std::vector<int>{s.n, s.k} : std::vector<int>{s.n, s.k, s.h, s.w};
  Blob<float> a(s.InputShape()), b(s.InputShape()), top(top_shape);
  for (Blob<float>* blob : {&a, &b, &top}) {
    if (gpu) {
      blob->mutable_gpu_data();
      blob->mutable_gpu_diff();
    } else {
      blob->mutable_cpu_data();
      blob->mutable_cpu_diff();
    }
  }
  return MemoryInUse(gpu) - before;
}

// One shape: the layer and the composition for both activations and the two GEMM floors, timed interleaved
// (see MeasureInterleaved). Memory: each net's allocation over its construction and first iteration.
void BenchFusionShape(const FusionShape& s, const Options& o, Output* out) {
  const bool gpu = !o.cpu;
  struct NetRun {
    std::string variant, activation;
    std::unique_ptr<Net<float> > net;
    double bytes;
  };
  std::vector<NetRun> runs;
  const double io_bytes = HasSuite(o, "fusion") ? IoBytes(s, gpu) : 0;
  if (HasSuite(o, "fusion")) {
    for (const std::string activation : {"RELU", "NONE"}) {
      for (const std::string variant : {"layer", "composition"}) {
        Caffe::set_random_seed(1);
        const double before = MemoryInUse(gpu);
        std::unique_ptr<Net<float> > net = MakeNet(variant == "layer" ? FusionNet(s, activation)
                                                                      : CompositionNet(s, activation));
        FillFusionNet(net.get(), 1.f);
        net->Forward();
        net->Backward();
        const double bytes = MemoryInUse(gpu) - before;
        runs.push_back(NetRun{variant, activation, std::move(net), bytes});
      }
    }
  }
  FloorStreams streams;
  std::vector<std::string> floors;
  if (HasSuite(o, "floor")) {
    for (int i = 0; i < 2; ++i) streams.emplace_back(new FloorStream(s));
    floors = {"ideal", "layer_calls"};
  }
  std::vector<Candidate> candidates;
  for (NetRun& run : runs) {
    Net<float>* n = run.net.get();
    Candidate c;
    c.fwd = [n]() { n->Forward(); };
    c.bwd = [n]() { n->Backward(); };
    candidates.push_back(c);
  }
  for (const std::string& variant : floors) candidates.push_back(FloorWork(s, variant, &streams, gpu));
  if (candidates.empty()) return;
  MeasureInterleaved(&candidates, o);

  // What both variants hold alike: the inputs and the fused top, data + diff each, as allocated (measured before
  // the nets, see IoBytes), and the two weights, data + diff (exact: K x C floats, a multiple of the allocator's
  // granularity at these shapes).
  const double weight_bytes = 2.0 * 2.0 * sizeof(float) * s.k * s.c;
  const double tera = 1e12;
  for (size_t i = 0; i < runs.size(); ++i) {
    const NetRun& run = runs[i];
    const Timing t = Summarize(candidates[i]);
    Record r;
    r.Set("bench", "fusion").Set("mode", gpu ? "gpu" : "cpu").Set("variant", run.variant)
        .Set("activation", run.activation);
    SetShape(&r, s);
    SetTiming(&r, t);
    r.Set("flops", s.Flops()).Set("tflops", s.Flops() / (t.total_ms * 1e-3) / tera)
        .Set("mem_mb", run.bytes / kMiB).Set("mem_io_mb", io_bytes / kMiB)
        .Set("mem_internal_mb", (run.bytes - io_bytes) / kMiB)
        .Set("mem_buffers_mb", (run.bytes - io_bytes - weight_bytes) / kMiB);
    out->Write(r, Format("fusion  %-6s %-4s %-11s fwd %8.3f  bwd %8.3f  total %8.3f ms  %6.2f TFLOP/s  mem %8.1f MiB"
                         " (internal %8.1f, buffers %8.1f)", s.name.c_str(), run.activation.c_str(),
                         run.variant.c_str(), t.fwd_ms, t.bwd_ms, t.total_ms, s.Flops() / (t.total_ms * 1e-3) / tera,
                         run.bytes / kMiB, (run.bytes - io_bytes) / kMiB,
                         (run.bytes - io_bytes - weight_bytes) / kMiB));
  }
  for (size_t i = 0; i < floors.size(); ++i) {
    const Timing t = Summarize(candidates[runs.size() + i]);
    Record r;
    r.Set("bench", "gemm_floor").Set("mode", gpu ? "gpu" : "cpu").Set("variant", floors[i]);
    SetShape(&r, s);
    SetTiming(&r, t);
    r.Set("flops", s.Flops()).Set("tflops", s.Flops() / (t.total_ms * 1e-3) / tera);
    out->Write(r, Format("floor   %-6s      %-11s fwd %8.3f  bwd %8.3f  total %8.3f ms  %6.2f TFLOP/s  "
                         "(%.1f GFLOP)", s.name.c_str(), floors[i].c_str(), t.fwd_ms, t.bwd_ms, t.total_ms,
                         s.Flops() / (t.total_ms * 1e-3) / tera, s.Flops() / 1e9));
  }
}

// ---------------------------------------------------------------------------------------------------------
// FlowAmplify

struct AmplifyShape {
  int n, c, h, w, src_h, src_w;
};

const char kAmplifyParam[] =
    "name: \"amp\" type: \"FlowAmplify\" flow_amplify_param { offset: 1 scale: 1 resize: AREA }";

// The layer alone with its blobs: feat, source, top.
struct AmplifyRig {
  Blob<float> feat, source, top;
  std::vector<Blob<float>*> bottom, tops;
  caffe::shared_ptr<Layer<float> > layer;  // boost's, as Caffe's
  explicit AmplifyRig(const AmplifyShape& s)
      : feat(std::vector<int>{s.n, s.c, s.h, s.w}), source(std::vector<int>{s.n, 1, s.src_h, s.src_w}) {
    bottom = {&feat, &source};
    tops = {&top};
    LayerParameter param;
    CHECK(google::protobuf::TextFormat::ParseFromString(kAmplifyParam, &param));
    layer = caffe::LayerRegistry<float>::CreateLayer(param);
    layer->SetUp(bottom, tops);
    FillGaussian(feat.mutable_cpu_data(), feat.count(), 1.f);
    FillUniform(source.mutable_cpu_data(), source.count(), 0.f, 20.f);  // magnitudes in pixels
    FillGaussian(top.mutable_cpu_diff(), top.count(), 1.f);
  }
  void Forward() { layer->Forward(bottom, tops); }
  void Backward(const std::vector<bool>& propagate_down) { layer->Backward(tops, propagate_down, bottom); }
};

// The bytes an ideal implementation must move (fp32): forward reads x and s, writes y; backward reads dy
// and writes dx, and for the source also reads x and writes ds. The N x H x W gate is left out (0.2% here).
double AmplifyBytes(const AmplifyShape& s, bool to_source) {
  const double feat = 4.0 * s.n * s.c * s.h * s.w, source = 4.0 * s.n * s.src_h * s.src_w;
  return (2 * feat + source) + (2 * feat) + (to_source ? feat + source : 0.0);
}

void BenchAmplify(const AmplifyShape& s, bool to_source, const Options& o, Output* out) {
  const bool gpu = !o.cpu;
  const std::string variant = to_source ? "feat_and_source" : "feat_only";
  AmplifyRig rig(s);
  const std::vector<bool> propagate_down = {true, to_source};
  const Timing t = Measure([&]() { rig.Forward(); }, [&]() { rig.Backward(propagate_down); }, o);
  const double bytes = AmplifyBytes(s, to_source);
  Record r;
  r.Set("bench", "flow_amplify").Set("mode", gpu ? "gpu" : "cpu").Set("variant", variant).Set("n", s.n)
      .Set("c", s.c).Set("h", s.h).Set("w", s.w).Set("src_h", s.src_h).Set("src_w", s.src_w);
  SetTiming(&r, t);
  r.Set("bytes", bytes).Set("gbps", bytes / (t.total_ms * 1e-3) / 1e9);
  out->Write(r, Format("amplify %-17s      fwd %8.3f  bwd %8.3f  total %8.3f ms  %7.1f GB/s (%.1f MB moved)",
                       variant.c_str(), t.fwd_ms, t.bwd_ms, t.total_ms, bytes / (t.total_ms * 1e-3) / 1e9,
                       bytes / 1e6));
}

// A copy of bytes / 2 (the same bytes moved, read + written, as the layer's): cudaMemcpy device to device on the
// GPU, memcpy on the CPU.
void BenchMemcpy(double bytes, const std::string& label, const Options& o, Output* out) {
  const bool gpu = !o.cpu;
  const size_t size = static_cast<size_t>(bytes / 2);
  caffe::SyncedMemory src(size), dst(size);
  std::function<void()> copy;
#ifndef CPU_ONLY
  if (gpu) {
    CUDA_CHECK(cudaMemset(src.mutable_gpu_data(), 1, size));
    void* d = dst.mutable_gpu_data();
    const void* from = src.gpu_data();
    copy = [=]() { CUDA_CHECK(cudaMemcpy(d, from, size, cudaMemcpyDeviceToDevice)); };
  }
#endif
  if (!gpu) {
    std::memset(src.mutable_cpu_data(), 1, size);
    void* d = dst.mutable_cpu_data();
    std::memset(d, 0, size);
    const void* from = src.cpu_data();
    copy = [=]() { std::memcpy(d, from, size); };
  }
  const Timing t = Measure(copy, std::function<void()>(), o);
  Record r;
  r.Set("bench", "memcpy").Set("mode", gpu ? "gpu" : "cpu").Set("variant", label)
      .Set("copy_bytes", static_cast<double>(size));
  SetTiming(&r, t);
  r.Set("bytes", 2.0 * size).Set("gbps", 2.0 * size / (t.total_ms * 1e-3) / 1e9);
  out->Write(r, Format("memcpy  %-23s                      total %8.3f ms  %7.1f GB/s (read + write of %.1f MB)",
                       label.c_str(), t.total_ms, 2.0 * size / (t.total_ms * 1e-3) / 1e9, size / 1e6));
}

#ifndef CPU_ONLY
// ---------------------------------------------------------------------------------------------------------
// CPU/GPU parity

// max |a - b| / max |a|: the largest difference relative to the scale of the reference a.
double RelativeDifference(const float* a, const float* b, int count) {
  double max_diff = 0, max_ref = 0;
  for (int i = 0; i < count; ++i) {
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(a[i])));
  }
  return max_ref > 0 ? max_diff / max_ref : max_diff;
}

std::vector<float> Copy(const float* data, int count) { return std::vector<float>(data, data + count); }

// The same net, same inputs and top diff, run once in CPU mode and once in GPU mode.
void ParityFusion(const FusionShape& s, const std::string& activation, Output* out) {
  Caffe::set_random_seed(2);
  std::unique_ptr<Net<float> > net = MakeNet(FusionNet(s, activation));
  FillFusionNet(net.get(), 1.f);
  std::vector<Blob<float>*> bottoms = {net->blob_by_name("a").get(), net->blob_by_name("b").get()};
  Blob<float>* top = net->blob_by_name("fused").get();
  const std::vector<Blob<float>*>& params = net->learnable_params();
  std::vector<std::vector<float> > reference;
  double top_rel = 0, bottom_rel = 0, weight_rel = 0;
  for (const Caffe::Brew mode : {Caffe::CPU, Caffe::GPU}) {
    Caffe::set_mode(mode);
    net->ClearParamDiffs();
    net->Forward();
    net->Backward();
    std::vector<std::vector<float> > results = {Copy(top->cpu_data(), top->count())};
    for (Blob<float>* b : bottoms) results.push_back(Copy(b->cpu_diff(), b->count()));
    for (Blob<float>* p : params) results.push_back(Copy(p->cpu_diff(), p->count()));
    if (mode == Caffe::CPU) {
      reference = results;
      continue;
    }
    for (size_t i = 0; i < results.size(); ++i) {
      const double rel = RelativeDifference(reference[i].data(), results[i].data(), results[i].size());
      double* slot = i == 0 ? &top_rel : (i <= bottoms.size() ? &bottom_rel : &weight_rel);
      *slot = std::max(*slot, rel);
    }
  }
  Record r;
  r.Set("bench", "parity").Set("layer", "MultiplicativeFusion").Set("shape", s.name).Set("activation", activation)
      .Set("n", s.n).Set("top_rel", top_rel).Set("bottom_diff_rel", bottom_rel).Set("weight_diff_rel", weight_rel);
  out->Write(r, Format("parity  MultiplicativeFusion %-6s %-4s N=%-3d top %.2e  bottom diffs %.2e  weight diffs %.2e",
                       s.name.c_str(), activation.c_str(), s.n, top_rel, bottom_rel, weight_rel));
}

void ParityAmplify(const AmplifyShape& s, Output* out) {
  Caffe::set_random_seed(3);
  AmplifyRig rig(s);
  std::vector<std::vector<float> > reference;
  double top_rel = 0, feat_rel = 0, source_rel = 0;
  for (const Caffe::Brew mode : {Caffe::CPU, Caffe::GPU}) {
    Caffe::set_mode(mode);
    rig.Forward();
    rig.Backward({true, true});
    std::vector<std::vector<float> > results = {Copy(rig.top.cpu_data(), rig.top.count()),
                                                Copy(rig.feat.cpu_diff(), rig.feat.count()),
                                                Copy(rig.source.cpu_diff(), rig.source.count())};
    if (mode == Caffe::CPU) {
      reference = results;
      continue;
    }
    top_rel = RelativeDifference(reference[0].data(), results[0].data(), results[0].size());
    feat_rel = RelativeDifference(reference[1].data(), results[1].data(), results[1].size());
    source_rel = RelativeDifference(reference[2].data(), results[2].data(), results[2].size());
  }
  Record r;
  r.Set("bench", "parity").Set("layer", "FlowAmplify").Set("shape", "conv5").Set("n", s.n).Set("top_rel", top_rel)
      .Set("bottom_diff_rel", std::max(feat_rel, source_rel)).Set("feat_diff_rel", feat_rel)
      .Set("source_diff_rel", source_rel);
  out->Write(r, Format("parity  FlowAmplify conv5 N=%-3d top %.2e  feat diff %.2e  source diff %.2e", s.n, top_rel,
                       feat_rel, source_rel));
}

void DeviceRecord(int device, Output* out) {
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  int driver = 0, runtime = 0, cublas = 0;
  CUDA_CHECK(cudaDriverGetVersion(&driver));
  CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  CUBLAS_CHECK(cublasGetVersion(Caffe::cublas_handle(), &cublas));
  Record r;
  r.Set("bench", "device").Set("name", prop.name).Set("compute_capability", Format("%d.%d", prop.major, prop.minor))
      .Set("sm_count", prop.multiProcessorCount).Set("memory_gib", prop.totalGlobalMem / (1024.0 * kMiB))
      .Set("cuda_driver_api", driver).Set("cuda_runtime", runtime).Set("cublas", cublas);
  out->Write(r, Format("device  %s (sm_%d%d, %d SMs, %.1f GiB), CUDA driver API %d, runtime %d, cuBLAS %d", prop.name,
                       prop.major, prop.minor, prop.multiProcessorCount, prop.totalGlobalMem / (1024.0 * kMiB), driver,
                       runtime, cublas));
}
#endif  // CPU_ONLY

// ---------------------------------------------------------------------------------------------------------
// Whole nets

void SetBatch(NetParameter* param, int batch) {
  for (int i = 0; i < param->layer_size(); ++i) {
    LayerParameter* layer = param->mutable_layer(i);
    if (layer->type() == "Input") {
      for (int j = 0; j < layer->input_param().shape_size(); ++j) {
        layer->mutable_input_param()->mutable_shape(j)->set_dim(0, batch);
      }
    } else if (layer->type() == "DummyData") {
      for (int j = 0; j < layer->dummy_data_param().shape_size(); ++j) {
        layer->mutable_dummy_data_param()->mutable_shape(j)->set_dim(0, batch);
      }
    }
  }
}

int InputBatch(const Net<float>& net) {
  for (const auto& blob : net.blobs()) {
    if (blob->num_axes() > 0) return blob->shape(0);
  }
  return 0;
}

void BenchNet(const Options& o, Output* out) {
  const bool gpu = !o.cpu;
  NetParameter param;
  caffe::ReadNetParamsFromTextFileOrDie(o.net, &param);
  param.mutable_state()->set_phase(o.phase == "TRAIN" ? caffe::TRAIN : caffe::TEST);
  if (o.batch > 0) SetBatch(&param, o.batch);
  const double before = MemoryInUse(gpu);
  Net<float> net(param);
  Net<float>* n = &net;
  std::function<void()> bwd;
  if (!o.forward_only) bwd = [n]() { n->Backward(); };
  const Timing t = Measure([n]() { n->Forward(); }, bwd, o);
  const double bytes = MemoryInUse(gpu) - before;
  const int batch = InputBatch(net);
  Record r;
  r.Set("bench", "net").Set("mode", gpu ? "gpu" : "cpu").Set("name", o.name).Set("model", o.net)
      .Set("phase", o.phase).Set("batch", batch).Set("forward_only", o.forward_only);
  SetTiming(&r, t);
  r.Set("mem_mb", bytes / kMiB).Set("samples_per_s", batch / (t.total_ms * 1e-3));
  out->Write(r, Format("net     %-24s batch %4d %s fwd %8.2f  bwd %8.2f  total %8.2f ms  %8.1f samples/s  mem %8.0f MiB",
                       o.name.c_str(), batch, o.forward_only ? "fwd-only" : "fwd+bwd ", t.fwd_ms, t.bwd_ms,
                       t.total_ms, batch / (t.total_ms * 1e-3), bytes / kMiB));
}

// ---------------------------------------------------------------------------------------------------------

void RunLayerSuites(const Options& o, Output* out) {
  const bool gpu = !o.cpu;
  const std::vector<FusionShape> shapes = (o.cpu || o.small) ? CpuFusionShapes() : GpuFusionShapes();
  for (const FusionShape& s : shapes) BenchFusionShape(s, o, out);
  const AmplifyShape amplify = (o.cpu || o.small) ? AmplifyShape{32, 512, 14, 14, 224, 224}
                                                  : AmplifyShape{256, 512, 14, 14, 224, 224};
  const bool has_amplify = HasLayerType("FlowAmplify");
  if (!has_amplify && (HasSuite(o, "amplify") || HasSuite(o, "parity"))) {
    Record r;
    r.Set("bench", "skipped").Set("mode", gpu ? "gpu" : "cpu").Set("what", "FlowAmplify")
        .Set("why", "layer type not in this build of libcaffe");
    out->Write(r, "skipped FlowAmplify: the layer type is not in this build of libcaffe");
  }
  if (HasSuite(o, "amplify") && has_amplify) {
    for (const bool to_source : {false, true}) BenchAmplify(amplify, to_source, o, out);
  }
  if (HasSuite(o, "memcpy")) {
    BenchMemcpy(AmplifyBytes(amplify, false), "amplify_feat_only", o, out);
    BenchMemcpy(AmplifyBytes(amplify, true), "amplify_feat_and_source", o, out);
  }
#ifndef CPU_ONLY
  if (gpu && HasSuite(o, "parity")) {
    const FusionShape conv5 = {"conv5", 4, 512, 2048, 14, 14}, fc7 = {"fc7", 16, 4096, 4096, 0, 0};
    for (const std::string activation : {"RELU", "NONE"}) {
      ParityFusion(conv5, activation, out);
      ParityFusion(fc7, activation, out);
    }
    if (has_amplify) ParityAmplify(AmplifyShape{4, 512, 14, 14, 224, 224}, out);
    Caffe::set_mode(Caffe::GPU);
  }
#endif
  (void)gpu;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = ParseArgs(argc, argv);
  FLAGS_logtostderr = 1;
  FLAGS_minloglevel = 1;  // warnings and errors only: no Net construction logs
  google::InitGoogleLogging(argv[0]);
  Output out(o.out);
  if (o.cpu) {
    Caffe::set_mode(Caffe::CPU);
  } else {
#ifndef CPU_ONLY
    Caffe::SetDevice(o.gpu);
    Caffe::set_mode(Caffe::GPU);
    DeviceRecord(o.gpu, &out);
    // A first GEMM, so cuBLAS's workspace is allocated before any memory is measured.
    Blob<float> warm(std::vector<int>{64, 64});
    caffe::caffe_gpu_gemm<float>(CblasNoTrans, CblasNoTrans, 64, 64, 64, 1.f, warm.gpu_data(), warm.gpu_data(),
                                 0.f, warm.mutable_gpu_diff());
    CUDA_CHECK(cudaDeviceSynchronize());
#endif
  }
  if (!o.net.empty()) {
    BenchNet(o, &out);
  } else {
    RunLayerSuites(o, &out);
  }
  return 0;
}
