#ifndef CAFFE_FLOW_AMPLIFY_LAYER_HPP_
#define CAFFE_FLOW_AMPLIFY_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief The 1-D interpolation weights of OpenCV's cv::resize along one axis
 *        (mfuse, FlowAmplify).
 *
 * Resizing an image from @f$ H' \times W' @f$ to @f$ H \times W @f$ with
 * INTER_AREA, INTER_LINEAR or INTER_NEAREST is separable: out = Wy in Wx^T,
 * with Wy of @f$ H \times H' @f$ and Wx of @f$ W \times W' @f$ built by this
 * function with OpenCV's own formulas (float weights, as OpenCV stores them).
 *
 * @param src source length along the axis (> 0)
 * @param dst destination length along the axis (> 0)
 * @param method AREA, BILINEAR or NEAREST
 * @param area_shrinks for AREA only: whether the image shrinks (or keeps its
 *        size) along BOTH axes. OpenCV uses exact pixel-area weights then;
 *        otherwise (either axis grows) it uses its bilinear-like INTER_AREA
 *        upsampling weights on both axes.
 * @param weights filled with the dense @f$ dst \times src @f$ matrix,
 *        row-major.
 */
void FlowAmplifyResizeWeights(int src, int dst,
    FlowAmplifyParameter_ResizeMethod method, bool area_shrinks,
    std::vector<double>* weights);

/**
 * @brief Amplifies features by an optical-flow magnitude map (Park et al.,
 *        WACV 2016, Sec. 3): @f$ y = x \cdot g @f$ with the gate
 *        @f$ g = \mathrm{offset} + \mathrm{scale} \cdot
 *        \mathrm{resize}(\min(|s|, \mathrm{clip\_max})) @f$ broadcast over
 *        the channels of x, optionally divided by its per-sample spatial mean.
 *
 * The gate source s is a magnitude map (1 channel, used as given) or an x/y
 * flow field (2 channels; the magnitude is @f$ \sqrt{s_x^2 + s_y^2} @f$ per
 * pixel). It can be of any spatial size: it is resized to the size of x with
 * OpenCV's INTER_AREA / INTER_LINEAR / INTER_NEAREST weights, precomputed in
 * Reshape. Order: magnitude, clip (clip_max > 0), resize, offset + scale,
 * MEAN normalisation.
 *
 * Backward reaches x always and s when propagate_down asks for it, through
 * the exact adjoint of every step (the norm's derivative is 0 at 0, the
 * clip's is 0 above clip_max).
 *
 * In-place computation (top == bottom[0]) is supported: the layer then keeps
 * a copy of x for the gradient with respect to s.
 */
template <typename Dtype>
class FlowAmplifyLayer : public Layer<Dtype> {
 public:
  explicit FlowAmplifyLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "FlowAmplify"; }
  // Two bottoms (features, gate source): LayerSetUp checks the count and names
  // the layer, which Caffe's ExactNumBottomBlobs check does not.
  virtual inline int ExactNumTopBlobs() const { return 1; }

  /// The gate of the last forward pass, @f$ N \times 1 \times H \times W @f$.
  const Blob<Dtype>& gate() const { return gate_; }

 protected:
  /**
   * @param bottom input Blob vector (length 2)
   *   -# @f$ (N \times C \times H \times W) @f$ the features x
   *   -# @f$ (N \times G \times H' \times W') @f$ the gate source s,
   *      G = 1 (magnitude) or G = 2 (x/y flow), any H', W' > 0
   * @param top output Blob vector (length 1)
   *   -# @f$ (N \times C \times H \times W) @f$ the amplified features
   *      @f$ y_{nchw} = x_{nchw} \, g_{nhw} @f$
   */
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  /**
   * @brief Gradients: @f$ \partial E / \partial x = g \, \partial E /
   *        \partial y @f$; @f$ \partial E / \partial s @f$ through the
   *        adjoint of the gate computation applied to
   *        @f$ \sum_c x \, \partial E / \partial y @f$.
   */
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  /// Fills one axis' forward weights (dst x src) and their transpose, with
  /// the [begin, end) range of non-zero columns of each row of both.
  void SetUpAxis(int src, int dst, bool area_shrinks, Blob<Dtype>* weights,
      Blob<int>* ranges, Blob<Dtype>* weights_t, Blob<int>* ranges_t);
  /// Refuses a (near) zero per-sample gate mean under MEAN normalisation.
  void CheckMeans(const vector<Blob<Dtype>*>& bottom);

  Dtype offset_, scale_, clip_max_;
  bool normalize_mean_;
  bool in_place_;
  int num_, channels_, height_, width_;                   // x
  int source_channels_, source_height_, source_width_;    // s
  // The resize, per axis: forward weights (dst x src) and adjoint weights
  // (src x dst), dense, with the non-zero column range [begin, end) per row.
  Blob<Dtype> wy_, wy_t_, wx_, wx_t_;
  Blob<int> wy_range_, wy_t_range_, wx_range_, wx_t_range_;
  int gate_rows_;  // the most source rows one gate row reads (wy's ranges)
  // CPU only (the GPU makes the gate in one pass over the source and goes
  // back to it in one pass too):
  Blob<Dtype> magnitude_;  // N x 1 x H' x W' (clipped); diff: its gradient
  Blob<Dtype> resized_x_;  // N x 1 x H' x W, magnitude resized along x
  Blob<Dtype> gate_;       // N x 1 x H x W; diff: dE/dgate
  // GPU only: dE/dgate summed over each group of channels, G x N x H x W.
  Blob<Dtype> gate_partials_;
  Blob<Dtype> gate_mean_;  // N, the mean of the gate before normalisation
  Blob<Dtype> dot_;        // N, per-sample sum of dE/dgate * gate (MEAN)
  Blob<Dtype> feat_copy_;  // x, kept only for in-place use
};

}  // namespace caffe

#endif  // CAFFE_FLOW_AMPLIFY_LAYER_HPP_
