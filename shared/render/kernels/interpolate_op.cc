/* Perspective-correct barycentric interpolation of per-vertex attributes over
the pixels tensorflow-graphics' rasterizer kernel marked as covered, and its
gradient.

The per-pixel formula is tensorflow-graphics' `differentiable_barycentrics`
followed by `interpolate_vertex_attribute`, written out with the same float
operations in the same order (this file is compiled with -ffp-contract=off):

  pixel centre   px = (2 col + 1) / W - 1,  py = (2 row + 1) / H - 1
  edge i         e_i = (ay bw - aw by) px + (aw bx - ax bw) py + (ax by - ay bx)
                 with a, b = clip (x, y, w) of corners i + 1 and i + 2 (mod 3)
  barycentrics   b_i = e_i / (e_0 + e_1 + e_2), 0 where the sum is 0
  value          v = b_0 c_0 + b_1 c_1 + b_2 c_2  (per channel; depth = clip w)

tfg multiplies each triangle's matrix by the sign of its determinant; that
sign cancels exactly in the normalisation, so it is left out.  Pixels outside
the mask get 0.  The gradient is the exact vector-Jacobian product of this
formula with respect to the attributes and clip x, y, w (never z: like the
rasterizer, nothing flows through visibility).

Work is split over TensorFlow's intra-op threads: rows of pixels for the
forward pass; (image, strip of rows) for the gradient, each strip summing
into its own buffer in pixel order and the strips then added in order, so
the result does not depend on thread timing.  Shapes are checked here and
vertex / triangle ids are range-checked, failing with InvalidArgument.
*/

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::errors::InvalidArgument;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

constexpr int kClipX = 0;
constexpr int kClipY = 1;
constexpr int kClipW = 3;
constexpr int kClipSize = 4;
// Estimated cost of one pixel for the work sharder (arbitrary units ~ cycles).
constexpr int64_t kPixelCost = 200;
// At most this many row strips (private gradient buffers) per image.
constexpr int kMaxStrips = 8;

// A corner's clip-space (x, y, w).
struct Xyw {
  float x, y, w;
};

// Edge function p . (a x b) of corners a, b at p = (px, py, 1).
inline float Edge(const Xyw& a, const Xyw& b, float px, float py) {
  return (a.y * b.w - a.w * b.y) * px + (a.w * b.x - a.x * b.w) * py + (a.x * b.y - a.y * b.x);
}

inline float DivideNoNan(float x, float y) { return y == 0.0f ? 0.0f : x / y; }

inline float PixelX(int column, int width) {
  return (2.0f * static_cast<float>(column) + 1.0f) / static_cast<float>(width) - 1.0f;
}

// Shapes and ids shared by the forward and gradient kernels.
struct Problem {
  int64_t batch, vertices, channels, triangle_count, height, width;
  const float* attributes;   // [B, V, A]
  const float* clip;         // [B, V, 4]
  const int32_t* triangles;  // [T, 3]
  const int32_t* ids;        // [B, H, W]
  const float* mask;         // [B, H, W]

  // The triangle of pixel `p` (flat over B * H * W) if it is covered, else -1.
  inline int64_t Triangle(int64_t p) const { return mask[p] > 0.0f ? ids[p] : -1; }

  // Corner vertex rows (flat over B * V) and clip (x, y, w) of triangle t in image b.
  inline void Corners(int64_t b, int64_t t, int64_t rows[3], Xyw xyw[3]) const {
    for (int j = 0; j < 3; ++j) {
      rows[j] = b * vertices + triangles[3 * t + j];
      const float* c = clip + kClipSize * rows[j];
      xyw[j] = {c[kClipX], c[kClipY], c[kClipW]};
    }
  }

  // Barycentrics of pixel (px, py); returns the sum of the unnormalised edge values.
  static inline float Barycentrics(const Xyw xyw[3], float px, float py, float bary[3]) {
    float e[3];
    for (int i = 0; i < 3; ++i) e[i] = Edge(xyw[(i + 1) % 3], xyw[(i + 2) % 3], px, py);
    const float total = e[0] + e[1] + e[2];
    for (int i = 0; i < 3; ++i) bary[i] = DivideNoNan(e[i], total);
    return total;
  }
};

// Reads and checks the five inputs shared by both ops (sets the status on failure).
void ReadProblem(OpKernelContext* context, Problem* problem) {
  const Tensor& attributes = context->input(0);
  const Tensor& clip = context->input(1);
  const Tensor& triangles = context->input(2);
  const Tensor& ids = context->input(3);
  const Tensor& mask = context->input(4);
  OP_REQUIRES(context, attributes.dims() == 3,
              InvalidArgument("attributes must be [B, V, A], got ", attributes.shape().DebugString()));
  const int64_t batch = attributes.dim_size(0), vertices = attributes.dim_size(1);
  OP_REQUIRES(context, clip.dims() == 3 && clip.dim_size(0) == batch &&
                           clip.dim_size(1) == vertices && clip.dim_size(2) == kClipSize,
              InvalidArgument("clip must be [B, V, 4] matching attributes, got ",
                              clip.shape().DebugString()));
  OP_REQUIRES(context, triangles.dims() == 2 && triangles.dim_size(1) == 3,
              InvalidArgument("triangles must be [T, 3], got ", triangles.shape().DebugString()));
  OP_REQUIRES(context, ids.dims() == 3 && ids.dim_size(0) == batch,
              InvalidArgument("triangle ids must be [B, H, W], got ", ids.shape().DebugString()));
  OP_REQUIRES(context, mask.shape() == ids.shape(),
              InvalidArgument("mask must be [B, H, W] like the triangle ids, got ",
                              mask.shape().DebugString()));
  *problem = {batch,
              vertices,
              attributes.dim_size(2),
              triangles.dim_size(0),
              ids.dim_size(1),
              ids.dim_size(2),
              attributes.flat<float>().data(),
              clip.flat<float>().data(),
              triangles.flat<int32_t>().data(),
              ids.flat<int32_t>().data(),
              mask.flat<float>().data()};
  const int32_t* t = problem->triangles;
  const bool vertices_ok = std::all_of(t, t + 3 * problem->triangle_count, [&](int32_t v) {
    return v >= 0 && v < vertices;
  });
  OP_REQUIRES(context, vertices_ok,
              InvalidArgument("triangles index vertices outside [0, ", vertices, ")"));
  const int64_t pixels = batch * problem->height * problem->width;
  bool ids_ok = true;
  for (int64_t p = 0; p < pixels; ++p) {
    const int64_t id = problem->Triangle(p);
    ids_ok &= id < problem->triangle_count && id >= -1;
  }
  OP_REQUIRES(context, ids_ok,
              InvalidArgument("triangle ids outside [0, ", problem->triangle_count, ")"));
}

void ParallelFor(OpKernelContext* context, int64_t total, int64_t cost,
                 const std::function<void(int64_t, int64_t)>& work) {
  context->device()->tensorflow_cpu_worker_threads()->workers->ParallelFor(total, cost, work);
}

// Both ops: read and check the shared inputs, then run on them.
class InterpolateOpBase : public OpKernel {
 public:
  explicit InterpolateOpBase(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    Problem p;
    ReadProblem(context, &p);
    if (context->status().ok()) Run(context, p);
  }

 protected:
  virtual void Run(OpKernelContext* context, const Problem& p) = 0;
};

class InterpolateAttributesOp : public InterpolateOpBase {
 public:
  using InterpolateOpBase::InterpolateOpBase;

 protected:
  void Run(OpKernelContext* context, const Problem& p) override {
    Tensor* image = nullptr;
    Tensor* depth = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(
                                0, TensorShape({p.batch, p.height, p.width, p.channels}), &image));
    OP_REQUIRES_OK(context, context->allocate_output(
                                1, TensorShape({p.batch, p.height, p.width, 1}), &depth));
    float* out = image->flat<float>().data();
    float* out_depth = depth->flat<float>().data();
    const int64_t channels = p.channels;
    auto rows = [&](int64_t first, int64_t last) {
      for (int64_t r = first; r < last; ++r) {
        const int64_t b = r / p.height;
        const float py = PixelX(static_cast<int>(r % p.height), static_cast<int>(p.height));
        for (int64_t col = 0; col < p.width; ++col) {
          const int64_t pixel = r * p.width + col;
          float* value = out + pixel * channels;
          const int64_t t = p.Triangle(pixel);
          if (t < 0) {
            std::fill(value, value + channels, 0.0f);
            out_depth[pixel] = 0.0f;
            continue;
          }
          int64_t vertex[3];
          Xyw xyw[3];
          p.Corners(b, t, vertex, xyw);
          float bary[3];
          Problem::Barycentrics(xyw, PixelX(static_cast<int>(col), static_cast<int>(p.width)),
                                py, bary);
          const float* c0 = p.attributes + vertex[0] * channels;
          const float* c1 = p.attributes + vertex[1] * channels;
          const float* c2 = p.attributes + vertex[2] * channels;
          for (int64_t c = 0; c < channels; ++c) {
            value[c] = bary[0] * c0[c] + bary[1] * c1[c] + bary[2] * c2[c];
          }
          out_depth[pixel] = bary[0] * xyw[0].w + bary[1] * xyw[1].w + bary[2] * xyw[2].w;
        }
      }
    };
    ParallelFor(context, p.batch * p.height, kPixelCost * p.width, rows);
  }
};

class InterpolateAttributesGradOp : public InterpolateOpBase {
 public:
  using InterpolateOpBase::InterpolateOpBase;

 protected:
  void Run(OpKernelContext* context, const Problem& p) override {
    const Tensor& d_image_tensor = context->input(5);
    const Tensor& d_depth_tensor = context->input(6);
    OP_REQUIRES(context, d_image_tensor.shape() ==
                             TensorShape({p.batch, p.height, p.width, p.channels}),
                InvalidArgument("image gradient must be [B, H, W, A], got ",
                                d_image_tensor.shape().DebugString()));
    OP_REQUIRES(context, d_depth_tensor.shape() == TensorShape({p.batch, p.height, p.width, 1}),
                InvalidArgument("depth gradient must be [B, H, W, 1], got ",
                                d_depth_tensor.shape().DebugString()));
    Tensor* d_attributes_tensor = nullptr;
    Tensor* d_clip_tensor = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({p.batch, p.vertices,
                                                                     p.channels}),
                                                     &d_attributes_tensor));
    OP_REQUIRES_OK(context, context->allocate_output(
                                1, TensorShape({p.batch, p.vertices, kClipSize}), &d_clip_tensor));
    const float* d_image = d_image_tensor.flat<float>().data();
    const float* d_depth = d_depth_tensor.flat<float>().data();
    float* d_attributes = d_attributes_tensor->flat<float>().data();
    float* d_clip = d_clip_tensor->flat<float>().data();

    // Strips per image: enough work units for the threads when the batch is small.
    const int threads = context->device()->tensorflow_cpu_worker_threads()->num_threads;
    const int64_t strips = std::max<int64_t>(
        1, std::min<int64_t>({kMaxStrips, p.height, (threads + p.batch - 1) / p.batch}));
    const int64_t attr_size = p.vertices * p.channels, clip_size = p.vertices * kClipSize;
    // Strip 0 of each image sums straight into the outputs; the others into buffers.
    std::vector<float> attr_buffers((strips - 1) * p.batch * attr_size, 0.0f);
    std::vector<float> clip_buffers((strips - 1) * p.batch * clip_size, 0.0f);
    std::fill(d_attributes, d_attributes + p.batch * attr_size, 0.0f);
    std::fill(d_clip, d_clip + p.batch * clip_size, 0.0f);
    const int64_t channels = p.channels;

    auto strip_work = [&](int64_t first, int64_t last) {
      std::vector<float> dy(channels + 1), g(3);
      for (int64_t unit = first; unit < last; ++unit) {
        const int64_t b = unit / strips, s = unit % strips;
        // Buffers are indexed by vertex rows flat over B * V, like the outputs.
        float* attr_out = s == 0 ? d_attributes : attr_buffers.data() + (s - 1) * p.batch * attr_size;
        float* clip_out = s == 0 ? d_clip : clip_buffers.data() + (s - 1) * p.batch * clip_size;
        const int64_t row_first = p.height * s / strips, row_last = p.height * (s + 1) / strips;
        for (int64_t row = row_first; row < row_last; ++row) {
          const float py = PixelX(static_cast<int>(row), static_cast<int>(p.height));
          for (int64_t col = 0; col < p.width; ++col) {
            const int64_t pixel = (b * p.height + row) * p.width + col;
            const int64_t t = p.Triangle(pixel);
            if (t < 0) continue;
            const float px = PixelX(static_cast<int>(col), static_cast<int>(p.width));
            int64_t vertex[3];
            Xyw xyw[3];
            p.Corners(b, t, vertex, xyw);
            float bary[3];
            const float total = Problem::Barycentrics(xyw, px, py, bary);
            const float* c[3] = {p.attributes + vertex[0] * channels,
                                 p.attributes + vertex[1] * channels,
                                 p.attributes + vertex[2] * channels};
            for (int64_t k = 0; k < channels; ++k) dy[k] = d_image[pixel * channels + k];
            dy[channels] = d_depth[pixel];
            // g_j: the upstream gradient of barycentric j (depth is clip w).
            for (int j = 0; j < 3; ++j) {
              float sum = 0.0f;
              for (int64_t k = 0; k < channels; ++k) sum += c[j][k] * dy[k];
              g[j] = sum + xyw[j].w * dy[channels];
            }
            const float g_dot_b = g[0] * bary[0] + g[1] * bary[1] + g[2] * bary[2];
            float d_edge[3];
            for (int i = 0; i < 3; ++i) d_edge[i] = DivideNoNan(g[i] - g_dot_b, total);
            for (int j = 0; j < 3; ++j) {
              float* attr_row = attr_out + vertex[j] * channels;
              for (int64_t k = 0; k < channels; ++k) attr_row[k] += bary[j] * dy[k];
            }
            float d_xyw[3][3] = {{0.0f, 0.0f, bary[0] * dy[channels]},
                                 {0.0f, 0.0f, bary[1] * dy[channels]},
                                 {0.0f, 0.0f, bary[2] * dy[channels]}};
            for (int i = 0; i < 3; ++i) {  // Edge i: a = corner i + 1, b = corner i + 2.
              const int ja = (i + 1) % 3, jb = (i + 2) % 3;
              const Xyw& a = xyw[ja];
              const Xyw& bb = xyw[jb];
              const float gi = d_edge[i];
              d_xyw[ja][0] += (bb.y - bb.w * py) * gi;
              d_xyw[ja][1] += (bb.w * px - bb.x) * gi;
              d_xyw[ja][2] += (bb.x * py - bb.y * px) * gi;
              d_xyw[jb][0] += (a.w * py - a.y) * gi;
              d_xyw[jb][1] += (a.x - a.w * px) * gi;
              d_xyw[jb][2] += (a.y * px - a.x * py) * gi;
            }
            for (int j = 0; j < 3; ++j) {
              float* clip_row = clip_out + vertex[j] * kClipSize;
              clip_row[kClipX] += d_xyw[j][0];
              clip_row[kClipY] += d_xyw[j][1];
              clip_row[kClipW] += d_xyw[j][2];
            }
          }
        }
      }
    };
    ParallelFor(context, p.batch * strips, kPixelCost * p.width * p.height / strips, strip_work);
    if (strips == 1) return;
    // Add the strips' buffers in order (image rows are disjoint, so images in parallel).
    auto reduce = [&](int64_t first, int64_t last) {
      for (int64_t b = first; b < last; ++b) {
        for (int64_t s = 1; s < strips; ++s) {
          const float* attr = attr_buffers.data() + (s - 1) * p.batch * attr_size + b * attr_size;
          const float* clip = clip_buffers.data() + (s - 1) * p.batch * clip_size + b * clip_size;
          float* attr_dst = d_attributes + b * attr_size;
          float* clip_dst = d_clip + b * clip_size;
          for (int64_t i = 0; i < attr_size; ++i) attr_dst[i] += attr[i];
          for (int64_t i = 0; i < clip_size; ++i) clip_dst[i] += clip[i];
        }
      }
    };
    ParallelFor(context, p.batch, (attr_size + clip_size) * strips, reduce);
  }
};

// Shape function: image [B, H, W, A] and depth [B, H, W, 1].
::tensorflow::Status InterpolateShape(InferenceContext* c) {
  ShapeHandle attributes, ids;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &attributes));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 3, &ids));
  DimensionHandle batch;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(attributes, 0), c->Dim(ids, 0), &batch));
  c->set_output(0, c->MakeShape({batch, c->Dim(ids, 1), c->Dim(ids, 2), c->Dim(attributes, 2)}));
  c->set_output(1, c->MakeShape({batch, c->Dim(ids, 1), c->Dim(ids, 2), 1}));
  return ::tensorflow::Status();
}

// Shape function: the gradients have the shapes of attributes and clip.
::tensorflow::Status InterpolateGradShape(InferenceContext* c) {
  c->set_output(0, c->input(0));
  c->set_output(1, c->input(1));
  return ::tensorflow::Status();
}

}  // namespace

REGISTER_OP("InterpolateAttributes")
    .Input("attributes: float32")
    .Input("clip: float32")
    .Input("triangles: int32")
    .Input("triangle_ids: int32")
    .Input("mask: float32")
    .Output("image: float32")
    .Output("depth: float32")
    .SetShapeFn(InterpolateShape)
    .Doc(R"doc(
Perspective-correct interpolation of attributes [B, V, A] over the covered
pixels (mask [B, H, W] > 0, triangle_ids [B, H, W]) of clip-space vertices
clip [B, V, 4] with triangles [T, 3]: image [B, H, W, A] and depth (clip w)
[B, H, W, 1], 0 where the mask is 0.
)doc");

REGISTER_OP("InterpolateAttributesGrad")
    .Input("attributes: float32")
    .Input("clip: float32")
    .Input("triangles: int32")
    .Input("triangle_ids: int32")
    .Input("mask: float32")
    .Input("d_image: float32")
    .Input("d_depth: float32")
    .Output("d_attributes: float32")
    .Output("d_clip: float32")
    .SetShapeFn(InterpolateGradShape)
    .Doc(R"doc(
Gradient of InterpolateAttributes with respect to attributes [B, V, A] and
clip [B, V, 4] (the z column is 0), given the image and depth gradients.
)doc");

REGISTER_KERNEL_BUILDER(Name("InterpolateAttributes").Device(::tensorflow::DEVICE_CPU),
                        InterpolateAttributesOp);
REGISTER_KERNEL_BUILDER(Name("InterpolateAttributesGrad").Device(::tensorflow::DEVICE_CPU),
                        InterpolateAttributesGradOp);
