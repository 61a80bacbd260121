//! Frames that carry large byte buffers without copying them: a Kafka fetch response's
//! records (read from the segment files, and checked there) and a peer frame's replicated
//! batches (held in memory by the leader) go out as segments of their own, written with the
//! frame's encoded fields in one vectored write, instead of being copied into one
//! contiguous frame buffer first.
//!
//! How: `kafka-protocol` encodes a byte field with one `put_slice` of the whole field, and
//! bincode with one `write_all`. [`SplicingBuf`] is handed the buffers to splice; when
//! `put_slice` (or `write`) is given exactly one of them (same address, same length), it
//! ends the current encoded segment and takes the buffer itself (a reference count, no copy)
//! as the next segment. Everything else is encoded as usual. Tests check that a spliced frame
//! is byte for byte the copied one.

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;
use std::io::{self, IoSlice};
use std::ops::Range;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Record buffers shorter than this are copied: a vectored write gains nothing on them.
pub(crate) const SPLICE_BYTES_MIN: usize = 4096;
/// Segments handed to one vectored write at most (the kernel's IOV_MAX is 1024).
const SEGMENTS_PER_WRITE_MAX: usize = 64;

/// An encoded frame (a Kafka response, or peer frames): segments to be written back to back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SplicedFrame {
    segments: Vec<Bytes>,
}

impl SplicedFrame {
    pub(crate) fn segments(&self) -> &[Bytes] {
        &self.segments
    }

    /// The frame as one buffer: no copy when it is one segment (every frame without spliced
    /// records).
    #[cfg(test)]
    pub(crate) fn into_contiguous(self) -> Bytes {
        crate::joined(self.segments)
    }
}

impl From<Bytes> for SplicedFrame {
    fn from(bytes: Bytes) -> Self {
        SplicedFrame {
            segments: vec![bytes],
        }
    }
}

/// A segment of a frame being encoded.
enum Segment {
    /// Encoded here; still writable, so that the length prefix can be set last.
    Encoded(BytesMut),
    Spliced(Bytes),
}

/// The buffer a response is encoded into; see the module doc.
pub(crate) struct SplicingBuf {
    done: Vec<Segment>,
    /// Bytes in `done`.
    done_bytes: usize,
    current: BytesMut,
    /// Buffers still to be spliced when the encoder writes them.
    to_splice: Vec<Bytes>,
}

impl SplicingBuf {
    /// A buffer with room for `capacity` encoded bytes (besides the spliced ones), that
    /// splices `to_splice` (buffers shorter than [`SPLICE_BYTES_MIN`] are copied instead).
    pub(crate) fn new(capacity: usize, mut to_splice: Vec<Bytes>) -> Self {
        to_splice.retain(|bytes| bytes.len() >= SPLICE_BYTES_MIN);
        SplicingBuf {
            done: Vec::new(),
            done_bytes: 0,
            current: BytesMut::with_capacity(capacity),
            to_splice,
        }
    }

    /// Splices `bytes` too, when an encoder writes them (unless shorter than
    /// [`SPLICE_BYTES_MIN`]).
    pub(crate) fn splice_also(&mut self, bytes: Bytes) {
        if bytes.len() >= SPLICE_BYTES_MIN {
            self.to_splice.push(bytes);
        }
    }

    /// The segment being encoded, for an encoder that wants a `BytesMut` (nothing is
    /// spliced while it writes there).
    pub(crate) fn encoded_mut(&mut self) -> &mut BytesMut {
        &mut self.current
    }

    /// Overwrites bytes already encoded; `range` must lie in one encoded segment (the
    /// length prefix, or a gap a message encoder fills in: never a spliced buffer).
    pub(crate) fn encoded_range(&mut self, range: Range<usize>) -> &mut [u8] {
        let mut start = 0;
        for segment in &mut self.done {
            let length = match segment {
                Segment::Encoded(bytes) => bytes.len(),
                Segment::Spliced(bytes) => bytes.len(),
            };
            if range.start >= start && range.end <= start + length {
                if let Segment::Encoded(bytes) = segment {
                    return &mut bytes[range.start - start..range.end - start];
                }
            }
            start += length;
        }
        myelin_core::invariant!(
            range.start >= self.done_bytes,
            "an encoder rewrites only encoded bytes, never spliced records"
        );
        &mut self.current[range.start - self.done_bytes..range.end - self.done_bytes]
    }

    /// The frame, its segments in order (empty ones left out).
    pub(crate) fn finish(mut self) -> SplicedFrame {
        self.done.push(Segment::Encoded(self.current));
        let segments = self
            .done
            .into_iter()
            .map(|segment| match segment {
                Segment::Encoded(bytes) => bytes.freeze(),
                Segment::Spliced(bytes) => bytes,
            })
            .filter(|bytes| !bytes.is_empty())
            .collect();
        SplicedFrame { segments }
    }
}

// SAFETY: every method delegates to `current`, a `BytesMut`, whose own `BufMut` contract
// holds; `put_slice` only moves `current`'s filled bytes aside (`split`) before delegating.
unsafe impl BufMut for SplicingBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, count: usize) {
        // SAFETY: the caller's promise (`count` bytes of `chunk_mut` initialised) is about
        // `current`'s chunk, which `chunk_mut` returned.
        unsafe { self.current.advance_mut(count) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, source: &[u8]) {
        let spliced = self
            .to_splice
            .iter()
            .position(|bytes| bytes.as_ptr() == source.as_ptr() && bytes.len() == source.len());
        match spliced {
            Some(index) => {
                let bytes = self.to_splice.swap_remove(index);
                let encoded = self.current.split();
                self.done_bytes += encoded.len() + bytes.len();
                self.done.push(Segment::Encoded(encoded));
                self.done.push(Segment::Spliced(bytes));
            }
            None => self.current.extend_from_slice(source),
        }
    }
}

impl ByteBufMut for SplicingBuf {
    fn offset(&self) -> usize {
        self.done_bytes + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        myelin_core::invariant!(
            offset >= self.done_bytes,
            "an encoder seeks only within the segment it is encoding"
        );
        self.current.resize(offset - self.done_bytes, 0);
    }

    fn range(&mut self, range: Range<usize>) -> &mut [u8] {
        self.encoded_range(range)
    }
}

/// bincode's encoder writes here (see the module doc).
impl io::Write for SplicingBuf {
    fn write(&mut self, source: &[u8]) -> io::Result<usize> {
        self.put_slice(source);
        Ok(source.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes every segment of `frame`, in order, with as few (vectored) writes as the
/// writer allows.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &SplicedFrame,
) -> io::Result<()> {
    let segments = frame.segments();
    if let [single] = segments {
        return writer.write_all(single).await;
    }
    let (mut index, mut offset) = (0, 0);
    while index < segments.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&segments[index][offset..])
            .chain(segments[index + 1..].iter().map(|segment| &segment[..]))
            .take(SEGMENTS_PER_WRITE_MAX)
            .map(IoSlice::new)
            .collect();
        let mut written = writer.write_vectored(&slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let left = segments[index].len() - offset;
            if written < left {
                offset += written;
                written = 0;
            } else {
                written -= left;
                index += 1;
                offset = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `step` bytes a write, vectored or not.
    struct Trickle {
        written: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let taken = buf.len().min(self.step);
            self.written.extend_from_slice(&buf[..taken]);
            std::task::Poll::Ready(Ok(taken))
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<io::Result<usize>> {
            let mut taken = 0;
            for buf in bufs {
                let part = buf.len().min(self.step - taken);
                self.written.extend_from_slice(&buf[..part]);
                taken += part;
                if taken == self.step {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(taken))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_frame_of_many_segments_is_written_whole_whatever_each_write_takes() {
        let segments: Vec<Bytes> = (0..100u8)
            .map(|index| Bytes::from(vec![index; usize::from(index) * 7 + 1]))
            .collect();
        let frame = SplicedFrame {
            segments: segments.clone(),
        };
        let expected = frame.clone().into_contiguous();
        for step in [1, 5, 64, 1000, 1 << 20] {
            let mut writer = Trickle {
                written: Vec::new(),
                step,
            };
            write_frame(&mut writer, &frame).await.unwrap();
            assert_eq!(writer.written, expected, "step {step}");
        }
    }
}
