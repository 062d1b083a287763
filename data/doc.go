// Package data reads labelled image datasets and turns them into batches for a
// model: float32 pixels in [0, 1], laid out [N, C, H, W], at the model's
// channel count and size. The model does its own mean/std normalization.
//
//	ds, err := data.Open("fixtures/mnist", data.Test)    // format told by the folder's contents
//	err = data.CheckFits(ds, 3, 224, 224, 10)              // one clear line before any work
//	fmt.Println(ds.Conversion(3, 224, 224))                // what Batch will do, for the user
//	x, labels, err := ds.Batch(ds.First(100), 3, 224, 224) // [100, 3, 224, 224]
//
// # Formats
//
// Open(path, split) looks at the folder and picks the format; a folder that
// matches none, or several, or lacks the requested split gives a one-line
// error naming the path and what was expected (errors.Is tells ErrNoDataset,
// ErrSplitMissing, ErrFormat apart).
//
// IDX, the MNIST family (MNIST, Fashion-MNIST, KMNIST, EMNIST):
//
//	train-images-idx3-ubyte  train-labels-idx1-ubyte   Train
//	t10k-images-idx3-ubyte   t10k-labels-idx1-ubyte    Test
//
// Each may end in ".gz"; whether a file is gzipped is told by its first two
// bytes, not its name. Also accepted: a dot before "idx"
// (train-images.idx3-ubyte), "test-" for "t10k-", and a prefix shared by the
// four names (emnist-digits-train-images-idx3-ubyte.gz); when both a file and
// its .gz are present the uncompressed one is read. The header (two zero bytes,
// type 0x08 for unsigned bytes, the number of dimensions, big-endian uint32
// dimensions) is checked before anything is allocated: images must be N×H×W,
// labels N, with equal N, and the data must be exactly as long as the header
// says. Classes are counted as one more than the largest label in both splits'
// label files. Images are gray (1 channel).
//
// CIFAR-10 binary: data_batch_1.bin ... data_batch_5.bin (those present, read
// in numeric order) for Train, test_batch.bin for Test. Each record is 1 label
// byte then 3072 pixel bytes: the 32×32 red plane, then green, then blue.
// CIFAR-100 binary: train.bin and test.bin, records of 2 label bytes (coarse
// 0..19, then fine 0..99; the fine label is used) and the same pixels. File
// sizes must be whole numbers of records and labels in range. Class names come
// from batches.meta.txt or fine_label_names.txt when present (CIFAR-10's are
// also known without it).
//
// IDX and CIFAR files are also found one level down, in the folders the
// archives and torchvision unpack to: cifar-10-batches-bin/,
// cifar-100-binary/, raw/ and <any>/raw/ (torchvision's MNIST/raw/). Both
// formats are held in memory as bytes (MNIST's 60000 training images take 47
// MB, CIFAR-10's 50000 take 154 MB).
//
// Image folders, as torchvision's ImageFolder lays them out:
//
//	ROOT/<class>/**/*.png|jpg|jpeg             one folder: both Train and Test
//	ROOT/train/<class>/...                     Train
//	ROOT/test/<class>/...  (or val/, valid/, validation/)   Test
//
// Class names sorted (by bytes, as Python sorts strings) give the label ids
// 0, 1, ...; with split folders, the classes of both splits together, so ids
// agree between them. Files are ordered as ImageFolder orders them (folder by
// folder, sorted), so "the first N" means the same in both. Hidden files and
// folders are skipped (ImageFolder would make ".ipynb_checkpoints" a class),
// and so are files of other types (counted in Dataset.String). Mind that the
// ids come from the folder names: a model trained with other ids needs folders
// named so that they sort into its order. Every image's header is read at
// Open, so a file that is not a PNG or JPEG, or is larger than MaxPixels, is
// reported before any work starts; pixels are decoded when a batch needs them
// and kept up to a memory budget (DefaultCacheBytes, see
// Dataset.SetCacheBytes). Gray images (8 or 16 bit) have 1 channel; all others
// (RGB, RGBA, paletted, CMYK JPEG) 3: alpha is dropped without blending, as
// PIL's convert("RGB") does, and 16-bit samples are rounded to 8 bits. Images
// may differ in size; Batch resizes each.
//
// # Conversion to the model's input
//
// Batch(indices, c, h, w) converts each image from its native shape:
//
//   - Values: byte v becomes float32(v)/255, as PyTorch's ToTensor computes it.
//     When channels and size already match, nothing else happens: the batch is
//     bit for bit the raw pixels divided by 255.
//   - Channels (1 or 3): gray to RGB replicates the plane (three identical
//     copies); RGB to gray is the ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B,
//     in float32, not rounded to 8 bits.
//   - Size, axis by axis: enlarging uses bilinear interpolation with half-pixel
//     centres and clamped edges, the formula of PyTorch's
//     interpolate(mode="bilinear", align_corners=False) and of torchvision's
//     Resize on tensors, so MNIST's 28 or CIFAR's 32 pixels stretched to a
//     ViT's 224 look as they do in a PyTorch pipeline. Shrinking uses area
//     averaging (each output pixel the mean of the input area it covers, the
//     pixels cut by its edges weighted by the part covered): bilinear would
//     skip input pixels beyond a factor of 2 and alias, area averaging uses
//     every pixel. The image is stretched to h×w; the aspect ratio is not kept
//     and nothing is cropped. Results are clamped to [0, 1].
//
// Dataset.Conversion(c, h, w) says in one line which of these apply, for the
// CLI to show as information. CheckFits(ds, c, h, w, classes) is the check
// that fails: more dataset classes than model outputs ("dataset has 100
// classes, the model outputs 10"), or a model taking other than 1 or 3
// channels. A Dataset.View(c, h, w) fixes the shape and returns int labels,
// for consumers that want Batch(indices []int) (*graph.Tensor, []int, error).
//
// # Splits
//
// Training uses the Train split and carves its validation set from it with
// ValidationSplit(n, size, seed): size is a fraction (0 < size < 1, rounded,
// at least 1) or a count (a whole number >= 1); a seeded Fisher-Yates shuffle
// of 0..n-1 puts its first examples in validation and the rest in training,
// both lists returned sorted. Shuffle(indices, seed) permutes in place
// (another PCG stream than the split's). The random numbers are PCG-DXSM
// (math/rand/v2's PCG, whose output is specified) bounded by Lemire's
// multiply-and-reject method, all written out here, so a seed gives the same
// split and order on every machine and Go version; a test pins the values.
// Evaluation uses the Test split; Dataset.First(n) is its first n examples in
// file order (for --limit).
//
// # Limits
//
// Readers check sizes before allocating and grow buffers only as data
// actually arrives, so a corrupt or hostile header cannot make them allocate
// much more than the file holds: image sides are at most MaxSide, images at
// most MaxPixels, a single IDX or CIFAR file at most 4 GiB of pixels. The fuzz
// targets FuzzIDX, FuzzCIFAR and FuzzImage check that no input panics or
// allocates beyond a bound proportional to its size.
package data
