// The ways MultiplicativeFusion can issue its GEMMs on one stream, timed alone (issue 18): which layout and
// which calls reach the floor of single GEMMs over all N*HW columns. Per stream, with X the bottom (N x C x HW,
// NCHW), W (K x C), Z and dZ (K x N*HW unless said otherwise):
//   forward  Z = W X:     single (X already C x N*HW: the floor), swap+single (the layer: reorder X, then one
//                         GEMM), strided-batched into K x N*HW (ldc = N*HW), strided-batched into N x K x HW (the
//                         layer before issue 18)
//   weights  dW += dZ X^T: single (floor), swap+single (the layer), N per-image GEMMs (before), strided-batched
//                         into N partial dW + a sum over them (N x K x C floats of scratch), cuBLASLt's best
//   inputs   dX = W^T dZ: single (floor), single+swap (the layer: one GEMM into C x N*HW, then reorder), strided-
//                         batched from K x N*HW (ldb = N*HW) into NCHW, strided-batched from N x K x HW (before)
// plus, for the three single GEMMs, every algorithm cuBLASLt's heuristic offers (up to 8), the best one timed.
// Strict FP32 (cuBLAS default math), or TF32 with --tf32 (CUBLAS_TF32_TENSOR_OP_MATH / COMPUTE_32F_FAST_TF32).
//
//   nvcc -O3 -arch=sm_90 -o fusion_gemm_variants benchmarks/fusion_gemm_variants.cu -lcublas -lcublasLt
//   fusion_gemm_variants [--tf32] > variants.jsonl        (JSON lines; a table on stderr)
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#define CUDA_OK(call)                                                                         \
  do {                                                                                        \
    cudaError_t e = (call);                                                                   \
    if (e != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)
#define CUBLAS_OK(call)                                                                   \
  do {                                                                                    \
    cublasStatus_t s = (call);                                                            \
    if (s != CUBLAS_STATUS_SUCCESS) {                                                     \
      std::fprintf(stderr, "%s:%d: %s: cuBLAS status %d\n", __FILE__, __LINE__, #call, s); \
      std::exit(1);                                                                       \
    }                                                                                     \
  } while (0)

namespace {

cublasHandle_t handle;
cublasLtHandle_t lt;
bool tf32 = false;

// out[j][i][:] = in[i][j][:], A x B runs of L floats (L % 4 == 0: float4), as the layer's kernel.
__global__ void Swap4(int count, int A, int B, int R, const float4* in, float4* out) {
  for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < count; index += blockDim.x * gridDim.x) {
    const int r = index % R, ji = index / R, i = ji % A, j = ji / A;
    out[index] = in[(i * B + j) * R + r];
  }
}
__global__ void Swap1(int count, int A, int B, int R, const float* in, float* out) {
  for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < count; index += blockDim.x * gridDim.x) {
    const int r = index % R, ji = index / R, i = ji % A, j = ji / A;
    out[index] = in[(i * B + j) * R + r];
  }
}
void Swap(int A, int B, int L, const float* in, float* out) {
  const int count = L % 4 == 0 ? A * B * L / 4 : A * B * L;
  const int blocks = (count + 511) / 512;
  if (L % 4 == 0) {
    Swap4<<<blocks, 512>>>(count, A, B, L / 4, reinterpret_cast<const float4*>(in), reinterpret_cast<float4*>(out));
  } else {
    Swap1<<<blocks, 512>>>(count, A, B, L, in, out);
  }
  CUDA_OK(cudaGetLastError());
}

// sum over n of parts[n] (K x C each).
__global__ void SumParts(int count, int N, const float* parts, float* out) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += blockDim.x * gridDim.x) {
    float s = out[i];
    for (int n = 0; n < N; ++n) s += parts[static_cast<size_t>(n) * count + i];
    out[i] = s;
  }
}

// Row-major GEMM through column-major cuBLAS: C (M x N, ldc) = op(A) op(B), as caffe_gpu_gemm.
void Gemm(bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B, int ldb, float beta,
          float* C, int ldc) {
  const float one = 1.f;
  CUBLAS_OK(cublasSgemm(handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &one, B,
                        ldb, A, lda, &beta, C, ldc));
}
void Batched(bool ta, bool tb, int M, int N, int K, const float* A, int lda, long long sa, const float* B, int ldb,
             long long sb, float beta, float* C, int ldc, long long sc, int batch) {
  const float one = 1.f;
  CUBLAS_OK(cublasSgemmStridedBatched(handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M,
                                      K, &one, B, ldb, sb, A, lda, sa, &beta, C, ldc, sc, batch));
}

float Median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

float Time(const std::function<void()>& f, int warmup = 5, int reps = 20) {
  for (int i = 0; i < warmup; ++i) f();
  CUDA_OK(cudaDeviceSynchronize());
  cudaEvent_t a, b;
  CUDA_OK(cudaEventCreate(&a));
  CUDA_OK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    CUDA_OK(cudaEventRecord(a));
    f();
    CUDA_OK(cudaEventRecord(b));
    CUDA_OK(cudaEventSynchronize(b));
    float t = 0;
    CUDA_OK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  CUDA_OK(cudaEventDestroy(a));
  CUDA_OK(cudaEventDestroy(b));
  return Median(ms);
}

// The best of cuBLASLt's heuristic algorithms (up to 8) for row-major C (M x N) = op(A) op(B), and how many ran.
float LtBest(bool ta, bool tb, int M, int N, int K, const float* A, const float* B, float* C, void* workspace,
             size_t workspace_bytes, int* tried) {
  // Column-major view: C^T (N x M) = op(B)^T op(A)^T, i.e. cuBLAS(opB, opA, N, M, K, B, A).
  cublasLtMatmulDesc_t op;
  CUBLAS_OK(cublasLtMatmulDescCreate(&op, tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  CUBLAS_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opb, sizeof(opb)));
  CUBLAS_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opa, sizeof(opa)));
  cublasLtMatrixLayout_t lb, la, lc;
  // B as stored: row-major (tb ? N x K : K x N) = column-major (tb ? K x N : N x K).
  CUBLAS_OK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, tb ? K : N, tb ? N : K, tb ? K : N));
  CUBLAS_OK(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, ta ? M : K, ta ? K : M, ta ? M : K));
  CUBLAS_OK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, N, M, N));
  cublasLtMatmulPreference_t pref;
  CUBLAS_OK(cublasLtMatmulPreferenceCreate(&pref));
  CUBLAS_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes,
                                                 sizeof(workspace_bytes)));
  cublasLtMatmulHeuristicResult_t results[8];
  int found = 0;
  CUBLAS_OK(cublasLtMatmulAlgoGetHeuristic(lt, op, lb, la, lc, lc, pref, 8, results, &found));
  float best = 1e30f;
  const float one = 1.f, zero = 0.f;
  for (int i = 0; i < found; ++i) {
    const float t = Time([&]() {
      CUBLAS_OK(cublasLtMatmul(lt, op, &one, B, lb, A, la, &zero, C, lc, C, lc, &results[i].algo, workspace,
                               workspace_bytes, 0));
    });
    best = std::min(best, t);
  }
  *tried = found;
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(op);
  return best;
}

float* Alloc(size_t count, unsigned seed) {
  float* p = NULL;
  CUDA_OK(cudaMalloc(&p, count * sizeof(float)));
  std::vector<float> host(count);
  for (size_t i = 0; i < count; ++i) {
    seed = seed * 1664525u + 1013904223u;
    host[i] = (seed >> 8) * (1.f / 16777216.f) - 0.5f;
  }
  CUDA_OK(cudaMemcpy(p, host.data(), count * sizeof(float), cudaMemcpyHostToDevice));
  return p;
}

void Report(const char* shape, const char* pass, const char* variant, double flops, float ms, float floor_ms) {
  std::printf("{\"bench\": \"fusion_gemm_variant\", \"tf32\": %s, \"shape\": \"%s\", \"pass\": \"%s\", "
              "\"variant\": \"%s\", \"ms\": %.5f, \"tflops\": %.3f, \"of_floor\": %.4f}\n",
              tf32 ? "true" : "false", shape, pass, variant, ms, flops / (ms * 1e-3) / 1e12, ms / floor_ms);
  std::fprintf(stderr, "%-6s %-8s %-26s %8.4f ms  %6.2f TFLOP/s  %5.2fx the single GEMM\n", shape, pass, variant,
               ms, flops / (ms * 1e-3) / 1e12, ms / floor_ms);
}

void Shape(const char* name, int N, int C, int K, int HW) {
  const int NHW = N * HW;
  const size_t x_count = static_cast<size_t>(C) * NHW, z_count = static_cast<size_t>(K) * NHW;
  float* w = Alloc(static_cast<size_t>(K) * C, 1);
  float* x = Alloc(x_count, 2);        // N x C x HW
  float* xt = Alloc(x_count, 3);       // C x N*HW
  float* z = Alloc(z_count, 4);        // K x N*HW or N x K x HW
  float* dz = Alloc(z_count, 5);
  float* dw = Alloc(static_cast<size_t>(K) * C, 6);
  float* dx = Alloc(x_count, 7);
  float* parts = Alloc(static_cast<size_t>(N) * K * C, 8);
  const size_t workspace_bytes = 64u << 20;
  void* workspace = NULL;
  CUDA_OK(cudaMalloc(&workspace, workspace_bytes));
  const double flops = 2.0 * K * C * NHW;
  const long long sx = static_cast<long long>(C) * HW, sz = static_cast<long long>(K) * HW;
  int tried = 0;

  const float f_floor = Time([&]() { Gemm(false, false, K, NHW, C, w, C, xt, NHW, 0.f, z, NHW); });
  Report(name, "forward", "single (floor)", flops, f_floor, f_floor);
  Report(name, "forward", "swap+single (layer)", flops, Time([&]() {
           Swap(N, C, HW, x, xt);
           Gemm(false, false, K, NHW, C, w, C, xt, NHW, 0.f, z, NHW);
         }), f_floor);
  Report(name, "forward", "batched ldc=N*HW", flops,
         Time([&]() { Batched(false, false, K, HW, C, w, C, 0, x, HW, sx, 0.f, z, NHW, HW, N); }), f_floor);
  Report(name, "forward", "batched NxKxHW (before)", flops,
         Time([&]() { Batched(false, false, K, HW, C, w, C, 0, x, HW, sx, 0.f, z, HW, sz, N); }), f_floor);
  Report(name, "forward", "cuBLASLt best", flops,
         LtBest(false, false, K, NHW, C, w, xt, z, workspace, workspace_bytes, &tried), f_floor);

  const float w_floor = Time([&]() { Gemm(false, true, K, C, NHW, dz, NHW, xt, NHW, 1.f, dw, C); });
  Report(name, "weights", "single (floor)", flops, w_floor, w_floor);
  Report(name, "weights", "swap+single (layer)", flops, Time([&]() {
           Swap(N, C, HW, x, xt);
           Gemm(false, true, K, C, NHW, dz, NHW, xt, NHW, 1.f, dw, C);
         }), w_floor);
  Report(name, "weights", "per-image loop (before)", flops, Time([&]() {
           for (int n = 0; n < N; ++n) Gemm(false, true, K, C, HW, dz + n * sz, HW, x + n * sx, HW, 1.f, dw, C);
         }), w_floor);
  Report(name, "weights", "batched parts + sum", flops, Time([&]() {
           Batched(false, true, K, C, HW, dz, NHW, HW, x, HW, sx, 0.f, parts, C, static_cast<long long>(K) * C, N);
           SumParts<<<(K * C + 511) / 512, 512>>>(K * C, N, parts, dw);
         }), w_floor);
  Report(name, "weights", "cuBLASLt best", flops,
         LtBest(false, true, K, C, NHW, dz, xt, dw, workspace, workspace_bytes, &tried), w_floor);

  const float x_floor = Time([&]() { Gemm(true, false, C, NHW, K, w, C, dz, NHW, 0.f, xt, NHW); });
  Report(name, "inputs", "single (floor)", flops, x_floor, x_floor);
  Report(name, "inputs", "single+swap (layer)", flops, Time([&]() {
           Gemm(true, false, C, NHW, K, w, C, dz, NHW, 0.f, xt, NHW);
           Swap(C, N, HW, xt, dx);
         }), x_floor);
  Report(name, "inputs", "batched ldb=N*HW", flops,
         Time([&]() { Batched(true, false, C, HW, K, w, C, 0, dz, NHW, HW, 0.f, dx, HW, sx, N); }), x_floor);
  Report(name, "inputs", "batched NxKxHW (before)", flops,
         Time([&]() { Batched(true, false, C, HW, K, w, C, 0, dz, HW, sz, 0.f, dx, HW, sx, N); }), x_floor);
  Report(name, "inputs", "cuBLASLt best", flops,
         LtBest(true, false, C, NHW, K, w, dz, xt, workspace, workspace_bytes, &tried), x_floor);
  const float swap_ms = Time([&]() { Swap(N, C, HW, x, xt); });
  const double swap_bytes = 2.0 * x_count * sizeof(float);
  std::printf("{\"bench\": \"fusion_swap\", \"shape\": \"%s\", \"ms\": %.5f, \"gbps\": %.1f}\n", name, swap_ms,
              swap_bytes / (swap_ms * 1e-3) / 1e9);
  std::fprintf(stderr, "%-6s reorder  N x C x HW -> C x N x HW        %8.4f ms  %6.0f GB/s\n", name, swap_ms,
               swap_bytes / (swap_ms * 1e-3) / 1e9);
  CUDA_OK(cudaDeviceSynchronize());
  for (void* p : {static_cast<void*>(w), static_cast<void*>(x), static_cast<void*>(xt), static_cast<void*>(z),
                  static_cast<void*>(dz), static_cast<void*>(dw), static_cast<void*>(dx), static_cast<void*>(parts),
                  workspace}) {
    CUDA_OK(cudaFree(p));
  }
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--tf32") == 0) {
      tf32 = true;
    } else {
      std::fprintf(stderr, "usage: fusion_gemm_variants [--tf32]\n");
      return 2;
    }
  }
  CUBLAS_OK(cublasCreate(&handle));
  CUBLAS_OK(cublasSetMathMode(handle, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  CUBLAS_OK(cublasLtCreate(&lt));
  Shape("conv5", 32, 512, 2048, 196);
  Shape("pool5", 32, 512, 2048, 49);
  CUBLAS_OK(cublasLtDestroy(lt));
  CUBLAS_OK(cublasDestroy(handle));
  return 0;
}
