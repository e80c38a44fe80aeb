#ifndef CAFFE_MULTIPLICATIVE_FUSION_LAYER_HPP_
#define CAFFE_MULTIPLICATIVE_FUSION_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/syncedmem.hpp"

namespace caffe {

/// out[j][i][l] = in[i][j][l] for an A x B x L array (its two leading axes
/// swapped; the runs of L stay contiguous): N x C x HW <-> C x N x HW.
template <typename Dtype>
void caffe_cpu_swap_leading_axes(int A, int B, int L, const Dtype* in,
    Dtype* out);
#ifndef CPU_ONLY
template <typename Dtype>
void caffe_gpu_swap_leading_axes(int A, int B, int L, const Dtype* in,
    Dtype* out);
#endif

/**
 * @brief Multiplicative fusion of S >= 2 streams (Park et al., WACV 2016,
 *        Sec. 4.1): @f$ y = \prod_s act(W_s x_s + b_s) @f$.
 *
 * Each stream is projected to K channels by a 1x1 projection W_s (K x C_s)
 * at every spatial position, shifted by b_s (the constant bias_value, 1 in
 * the paper, or a learnable K-vector), optionally rectified (activation RELU,
 * as in the authors' code), and the S results are multiplied element-wise.
 * With spatial DOT the product is summed over the H x W positions.
 *
 * Bottoms (S >= 2; all 4-D or all 2-D, same N and H x W, C_s may differ):
 *   -# @f$ (N \times C_s \times H \times W) @f$ conv features, or
 *   -# @f$ (N \times C_s) @f$ fc features.
 * Top:
 *   - ELEMENTWISE: @f$ (N \times K \times H \times W) @f$ (N x K for 2-D).
 *   - DOT: @f$ (N \times K \times 1 \times 1) @f$ (N x K for 2-D).
 *
 * Learnable blobs, per stream s in bottom order: the weight, then (only when
 * bias_learnable) the bias of shape (K). The weight has the shape of the
 * equivalent stock layer's weight, so it can be shared with, or loaded from,
 * that layer: (K x C_s x 1 x 1) like a 1x1 Convolution for 4-D bottoms,
 * (K x C_s) like an InnerProduct for 2-D bottoms.
 *
 * Memory: one K x N x H x W buffer per stream holds the projections W_s x_s
 * (channel-major: every GEMM of the layer is then a single GEMM over all
 * N x H x W columns; N x K for 2-D bottoms, as InnerProduct's); Backward overwrites it in place with the gradient w.r.t.
 * the projection, so every Backward must follow its own Forward (as in any
 * Net; a second Backward without a Forward is refused by a CHECK). The
 * C_s x N x H x W copies of x_s those GEMMs need (and dx_s before it is
 * reordered into N x C_s x H x W) are made in memory that is free at that
 * moment: the top's data (Forward, ELEMENTWISE), the projection buffer of a
 * stream already done or the diff of a bottom not yet written (Backward); a
 * buffer of the largest C_s x N x H x W is allocated only when none is (DOT
 * Forward, or streams without gradients to their bottoms). In-place use
 * (top == a bottom) is refused.
 */
template <typename Dtype>
class MultiplicativeFusionLayer : public Layer<Dtype> {
 public:
  explicit MultiplicativeFusionLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "MultiplicativeFusion"; }
  // The number of bottoms (>= 2) is checked in LayerSetUp with a message that
  // names the layer and the shapes.
  virtual inline int ExactNumTopBlobs() const { return 1; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  /// Projection element (n, k, hw) is at k * stride_k + n * stride_n + hw:
  /// K x N x HW for 4-D bottoms, N x K for 2-D ones.
  inline int projection_stride_k() const {
    return spatial_dim_ > 1 ? num_ * spatial_dim_ : 1;
  }
  inline int projection_stride_n() const {
    return spatial_dim_ > 1 ? spatial_dim_ : num_output_;
  }
  /// Index in blobs_ of stream s's weight, and of its bias (bias_learnable_).
  inline int weight_index(int s) const { return bias_learnable_ ? 2 * s : s; }
  inline int bias_index(int s) const { return 2 * s + 1; }
  /// Checks bottom shapes (the rules of the layer), with messages naming them.
  void CheckBottomShapes(const vector<Blob<Dtype>*>& bottom) const;
  /// Marks the projections consumed; refuses a Backward without a Forward.
  void BeginBackward();
  /// The projections of Forward: z_s (K x N*HW) = W_s x_s for every stream,
  /// on the CPU or the GPU (the GEMMs; the fused product is the caller's).
  void Project(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top, bool gpu);
  /// The GEMMs of Backward, after the projections hold dz_s: the weight
  /// gradients (and bias sums) and the bottom gradients, on the CPU or GPU.
  void BackwardGemms(const vector<bool>& propagate_down,
      const vector<Blob<Dtype>*>& bottom, bool gpu);
  /// C_s x N*HW elements Forward may overwrite while projecting stream s
  /// (streams in increasing order): the top's data, else the projection
  /// buffer of a later stream, else scratch_.
  Dtype* ForwardScratch(int s, const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top, bool gpu);
  /// The same for Backward's stream s, given the streams already done: the
  /// projection buffer of one of those, else the diff of a bottom still to
  /// be written (never bottom s's own), else scratch_.
  Dtype* BackwardScratch(int s, const vector<bool>& done,
      const vector<bool>& propagate_down,
      const vector<Blob<Dtype>*>& bottom, bool gpu);
  /// scratch_, sized for the largest stream (allocated on first use only).
  Dtype* OwnScratch(bool gpu);
#ifndef CPU_ONLY
  /// Device arrays of the S projection pointers and the S bias pointers
  /// (null for the fixed bias), for the fused kernels.
  Dtype** DevicePointers();
#endif

  int num_streams_;        // S
  int num_output_;         // K
  int num_;                // N
  int spatial_dim_;        // H * W (1 for 2-D bottoms)
  vector<int> channels_;   // C_s
  bool bias_learnable_;
  Dtype bias_value_;
  bool relu_;
  bool dot_;
  bool projections_valid_;  // set by Forward, consumed by Backward
  /// Per stream, K x N x (H*W) (N x K for 2-D bottoms): W_s x_s after
  /// Forward, d top / d(W_s x_s) after Backward.
  vector<shared_ptr<Blob<Dtype> > > projections_;
  /// max_s C_s x N x (H*W), used only when no free memory of that size is at
  /// hand (see ForwardScratch, BackwardScratch): no memory until then.
  Blob<Dtype> scratch_;
  /// N*HW ones (bias_learnable only): the bias gradient is dz * ones.
  Blob<Dtype> bias_multiplier_;
#ifndef CPU_ONLY
  shared_ptr<SyncedMemory> device_pointers_;
  vector<Dtype*> host_pointers_;
#endif
};

}  // namespace caffe

#endif  // CAFFE_MULTIPLICATIVE_FUSION_LAYER_HPP_
