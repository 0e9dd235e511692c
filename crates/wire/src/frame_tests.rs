use super::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame with an arbitrary first byte (FIN, RSV, opcode bits), masked or not.
fn raw_client_frame(b0: u8, masked: bool, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let len = payload.len();
    let mut out = vec![b0];
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xFFFF {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if masked {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A masked client frame, as a browser would send it.
fn mask_client_frame(opcode: OpCode, fin: bool, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let fin_bit = if fin { 0x80 } else { 0 };
    raw_client_frame(fin_bit | opcode.as_u8(), true, payload, key)
}

/// Turn an unmasked server frame into the same frame masked with `key`.
fn mask_server_frame(frame: &[u8], key: [u8; 4]) -> Vec<u8> {
    let header_len = match frame[1] & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut out = frame[..header_len].to_vec();
    out[1] |= 0x80;
    out.extend_from_slice(&key);
    let payload = &frame[header_len..];
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// Decode one whole frame that must produce a message and consume all of `frame`.
fn decode_single(frame: &[u8]) -> Result<Message, ProtocolError> {
    let mut dec = Decoder::new(1 << 20);
    let d = dec.decode(frame)?;
    assert_eq!(d.consumed, frame.len());
    Ok(d.message.expect("a complete message"))
}

/// Decode a sequence of whole frames, collecting messages until the first error.
fn decode_frames(dec: &mut Decoder, frames: &[Vec<u8>]) -> Result<Vec<Message>, ProtocolError> {
    let mut out = Vec::new();
    for frame in frames {
        let d = dec.decode(frame)?;
        assert_eq!(d.consumed, frame.len());
        out.extend(d.message);
    }
    Ok(out)
}

/// Feed `stream` in chunks (sizes cycled from `chunks`) the way a connection would,
/// checking the decoder's contract on every call. Returns the messages and the error.
fn feed(
    dec: &mut Decoder,
    stream: &[u8],
    chunks: &[usize],
) -> (Vec<Message>, Option<ProtocolError>, usize) {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut sizes = chunks.iter().copied().cycle();
    while pos < stream.len() {
        let n = sizes.next().unwrap_or(1).max(1).min(stream.len() - pos);
        buf.extend_from_slice(&stream[pos..pos + n]);
        pos += n;
        loop {
            let frame_len = Decoder::frame_len(&buf);
            match dec.decode(&buf) {
                Err(e) => return (out, Some(e), buf.len()),
                Ok(d) => {
                    assert!(d.consumed <= buf.len(), "consumed more than the input");
                    if d.consumed == 0 {
                        assert_eq!(d.message, None);
                        if let Some(needed) = frame_len {
                            assert!(needed > buf.len(), "frame_len says complete");
                        }
                        break;
                    }
                    assert_eq!(frame_len, Some(d.consumed));
                    buf.drain(..d.consumed);
                    out.extend(d.message);
                }
            }
        }
    }
    (out, None, buf.len())
}

fn message_parts(msg: &Message) -> (OpCode, Vec<u8>) {
    match msg {
        Message::Text(s) => (OpCode::Text, s.as_bytes().to_vec()),
        Message::Binary(b) => (OpCode::Binary, b.clone()),
        Message::Ping(b) => (OpCode::Ping, b.clone()),
        Message::Pong(b) => (OpCode::Pong, b.clone()),
        Message::Close(None) => (OpCode::Close, Vec::new()),
        Message::Close(Some((code, reason))) => {
            (OpCode::Close, close_payload(*code, reason.as_bytes()))
        }
    }
}

// ---------------------------------------------------------------- decoding

#[test]
fn decodes_masked_single_text_frame() {
    // The masked "Hello" example of RFC 6455 §5.7.
    let frame = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let mut dec = Decoder::new(1024);
    let d = dec.decode(&frame).unwrap();
    assert_eq!(
        d,
        Decoded {
            consumed: 11,
            message: Some(Message::Text("Hello".into()))
        }
    );
    assert!(!dec.in_fragmented_message());
    assert_eq!(mask_client_frame(OpCode::Text, true, b"Hello", KEY), frame);
}

#[test]
fn decodes_16bit_length_frames() {
    for len in [126usize, 127, 1000, 65535] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let frame = mask_client_frame(OpCode::Binary, true, &payload, KEY);
        assert_eq!(frame[1], 0x80 | 126);
        assert_eq!(frame.len(), 2 + 2 + 4 + len);
        assert_eq!(decode_single(&frame), Ok(Message::Binary(payload)));
    }
}

#[test]
fn decodes_64bit_length_frames() {
    for len in [65536usize, 70_001] {
        let text: String = "aé€😀".chars().cycle().take(len / 2).collect();
        let frame = mask_client_frame(OpCode::Text, true, text.as_bytes(), KEY);
        assert_eq!(frame[1], 0x80 | 127);
        assert_eq!(frame.len(), 2 + 8 + 4 + text.len());
        assert_eq!(decode_single(&frame), Ok(Message::Text(text)));
    }
}

#[test]
fn decodes_empty_frames() {
    let cases = [
        (OpCode::Text, Message::Text(String::new())),
        (OpCode::Binary, Message::Binary(Vec::new())),
        (OpCode::Ping, Message::Ping(Vec::new())),
        (OpCode::Pong, Message::Pong(Vec::new())),
        (OpCode::Close, Message::Close(None)),
    ];
    for (opcode, expected) in cases {
        let frame = mask_client_frame(opcode, true, b"", KEY);
        assert_eq!(frame.len(), 6);
        assert_eq!(decode_single(&frame), Ok(expected));
    }
}

#[test]
fn byte_at_a_time_feeding_needs_more_until_complete() {
    for len in [0usize, 5, 300, 70_000] {
        let payload = vec![0xA5; len];
        let frame = mask_client_frame(OpCode::Binary, true, &payload, KEY);
        let mut dec = Decoder::new(1 << 20);
        // Feeding a prefix at a time, as if one byte arrived per read.
        let probes: Vec<usize> = if len < 1000 {
            (0..frame.len()).collect()
        } else {
            (0..20).chain(frame.len() - 20..frame.len()).collect()
        };
        for n in probes {
            let d = dec.decode(&frame[..n]).unwrap();
            assert_eq!(
                d,
                Decoded {
                    consumed: 0,
                    message: None
                },
                "prefix of {n}"
            );
        }
        let d = dec.decode(&frame).unwrap();
        assert_eq!(d.consumed, frame.len());
        assert_eq!(d.message, Some(Message::Binary(payload)));
    }
}

#[test]
fn decodes_only_the_first_of_several_frames() {
    let mut stream = mask_client_frame(OpCode::Text, true, b"one", KEY);
    let first_len = stream.len();
    stream.extend(mask_client_frame(
        OpCode::Binary,
        true,
        b"two",
        [1, 2, 3, 4],
    ));
    let mut dec = Decoder::new(1024);
    let d = dec.decode(&stream).unwrap();
    assert_eq!(d.consumed, first_len);
    assert_eq!(d.message, Some(Message::Text("one".into())));
    let d = dec.decode(&stream[first_len..]).unwrap();
    assert_eq!(d.consumed, stream.len() - first_len);
    assert_eq!(d.message, Some(Message::Binary(b"two".to_vec())));
}

#[test]
fn fragmented_text_with_ping_between_fragments() {
    let frames = [
        mask_client_frame(OpCode::Text, false, b"Hel", KEY),
        mask_client_frame(OpCode::Ping, true, b"are you there", [9, 8, 7, 6]),
        mask_client_frame(OpCode::Continuation, false, b"lo, ", [0, 0, 0, 0]),
        mask_client_frame(OpCode::Continuation, true, b"world", [1, 1, 1, 1]),
    ];
    let mut dec = Decoder::new(1024);
    let expected = [
        None,
        Some(Message::Ping(b"are you there".to_vec())),
        None,
        Some(Message::Text("Hello, world".into())),
    ];
    for (i, (frame, want)) in frames.iter().zip(expected).enumerate() {
        let d = dec.decode(frame).unwrap();
        assert_eq!(d.consumed, frame.len());
        assert_eq!(d.message, want);
        assert_eq!(dec.in_fragmented_message(), i < 3, "after frame {i}");
    }
}

#[test]
fn control_frames_between_binary_fragments_returned_at_once() {
    let frames = vec![
        mask_client_frame(OpCode::Binary, false, &[1, 2], KEY),
        mask_client_frame(OpCode::Pong, true, b"p", KEY),
        mask_client_frame(OpCode::Continuation, false, &[], KEY),
        mask_client_frame(OpCode::Close, true, &close_payload(1000, b"bye"), KEY),
        mask_client_frame(OpCode::Continuation, true, &[3], KEY),
    ];
    let mut dec = Decoder::new(1024);
    assert_eq!(
        decode_frames(&mut dec, &frames),
        Ok(vec![
            Message::Pong(b"p".to_vec()),
            Message::Close(Some((1000, "bye".into()))),
            Message::Binary(vec![1, 2, 3]),
        ])
    );
}

#[test]
fn multibyte_utf8_split_across_fragments_accepted() {
    let text = "a€😀é";
    let bytes = text.as_bytes();
    // Every single split point, and also one byte per fragment.
    for cut in 0..=bytes.len() {
        let frames = vec![
            mask_client_frame(OpCode::Text, false, &bytes[..cut], KEY),
            mask_client_frame(OpCode::Continuation, true, &bytes[cut..], KEY),
        ];
        let mut dec = Decoder::new(1024);
        assert_eq!(
            decode_frames(&mut dec, &frames),
            Ok(vec![Message::Text(text.into())])
        );
    }
    let mut frames: Vec<Vec<u8>> = bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let opcode = if i == 0 {
                OpCode::Text
            } else {
                OpCode::Continuation
            };
            mask_client_frame(opcode, i == bytes.len() - 1, &[*b], KEY)
        })
        .collect();
    let mut dec = Decoder::new(1024);
    assert_eq!(
        decode_frames(&mut dec, &frames),
        Ok(vec![Message::Text(text.into())])
    );
    // An empty final fragment after a split character is fine too.
    frames.last_mut().unwrap()[0] &= 0x7F;
    frames.push(mask_client_frame(OpCode::Continuation, true, b"", KEY));
    let mut dec = Decoder::new(1024);
    assert_eq!(
        decode_frames(&mut dec, &frames),
        Ok(vec![Message::Text(text.into())])
    );
}

#[test]
fn frame_len_reports_needed_bytes() {
    assert_eq!(Decoder::frame_len(&[]), None);
    assert_eq!(Decoder::frame_len(&[0x81]), None);
    assert_eq!(Decoder::frame_len(&[0x81, 0x85]), Some(11));
    assert_eq!(Decoder::frame_len(&[0x81, 0x05]), Some(7));
    assert_eq!(Decoder::frame_len(&[0x82, 0xFE, 0x01]), None);
    assert_eq!(
        Decoder::frame_len(&[0x82, 0xFE, 0x01, 0x00]),
        Some(4 + 4 + 256)
    );
    assert_eq!(Decoder::frame_len(&[0x82, 0xFF, 0, 0, 0, 0, 0, 1]), None);
    assert_eq!(
        Decoder::frame_len(&[0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0]),
        Some(10 + 4 + 65536)
    );
    assert_eq!(
        Decoder::frame_len(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        Some(usize::MAX)
    );
    let frame = mask_client_frame(OpCode::Text, true, &[b'x'; 300], KEY);
    assert_eq!(Decoder::frame_len(&frame[..4]), Some(frame.len()));
}

#[test]
fn decoder_is_at_most_16_bytes() {
    assert!(std::mem::size_of::<Decoder>() <= 16);
}

// ---------------------------------------------------------------- errors

fn assert_error(frames: &[Vec<u8>], limit: usize, expected: ProtocolError, code: u16) {
    let mut dec = Decoder::new(limit);
    let err = decode_frames(&mut dec, frames).unwrap_err();
    assert_eq!(err, expected);
    assert_eq!(err.close_code(), code);
}

#[test]
fn rejects_unmasked_frame() {
    let frame = raw_client_frame(0x81, false, b"Hello", KEY);
    assert_error(
        std::slice::from_ref(&frame),
        1024,
        ProtocolError::UnmaskedFrame,
        1002,
    );
    // Detected from the first two bytes alone.
    assert_eq!(
        Decoder::new(1024).decode(&frame[..2]),
        Err(ProtocolError::UnmaskedFrame)
    );
    let ping = raw_client_frame(0x89, false, b"", KEY);
    assert_error(&[ping], 1024, ProtocolError::UnmaskedFrame, 1002);
}

#[test]
fn rejects_reserved_bits() {
    for rsv in [0x40u8, 0x20, 0x10, 0x70] {
        let frame = raw_client_frame(0x81 | rsv, true, b"x", KEY);
        assert_error(&[frame], 1024, ProtocolError::ReservedBits, 1002);
        let frame = raw_client_frame(0x89 | rsv, true, b"", KEY);
        assert_error(&[frame], 1024, ProtocolError::ReservedBits, 1002);
    }
}

#[test]
fn rejects_reserved_opcodes() {
    for op in (0x3u8..=0x7).chain(0xB..=0xF) {
        let frame = raw_client_frame(0x80 | op, true, b"", KEY);
        assert_error(&[frame], 1024, ProtocolError::ReservedOpcode(op), 1002);
        let frame = raw_client_frame(op, true, b"abc", KEY);
        assert_error(&[frame], 1024, ProtocolError::ReservedOpcode(op), 1002);
    }
}

#[test]
fn rejects_control_frame_over_125_bytes() {
    for opcode in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
        for len in [126usize, 65536] {
            let frame = mask_client_frame(opcode, true, &vec![b'a'; len], KEY);
            assert_error(
                std::slice::from_ref(&frame),
                1 << 20,
                ProtocolError::ControlFrameTooLong,
                1002,
            );
            // Known from the first two header bytes.
            let err = Decoder::new(1 << 20).decode(&frame[..2]);
            assert_eq!(err, Err(ProtocolError::ControlFrameTooLong));
        }
    }
}

#[test]
fn accepts_control_frames_of_125_bytes_even_under_small_limit() {
    let payload = vec![b'p'; 125];
    let ping = mask_client_frame(OpCode::Ping, true, &payload, KEY);
    let mut dec = Decoder::new(0);
    assert_eq!(
        decode_frames(&mut dec, &[ping]),
        Ok(vec![Message::Ping(payload.clone())])
    );
    let reason = "r".repeat(123);
    let close = mask_client_frame(
        OpCode::Close,
        true,
        &close_payload(1001, reason.as_bytes()),
        KEY,
    );
    assert_eq!(
        decode_single(&close),
        Ok(Message::Close(Some((1001, reason))))
    );
    // Data frames are still bound by the limit, empty ones fit any limit.
    let empty = mask_client_frame(OpCode::Text, true, b"", KEY);
    assert_eq!(
        decode_frames(&mut dec, &[empty]),
        Ok(vec![Message::Text(String::new())])
    );
    let one = mask_client_frame(OpCode::Binary, true, b"x", KEY);
    assert_error(&[one], 0, ProtocolError::MessageTooBig { limit: 0 }, 1009);
}

#[test]
fn rejects_fragmented_control_frame() {
    for opcode in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
        let frame = mask_client_frame(opcode, false, b"", KEY);
        assert_error(
            std::slice::from_ref(&frame),
            1024,
            ProtocolError::FragmentedControlFrame,
            1002,
        );
        let start = mask_client_frame(OpCode::Text, false, b"a", KEY);
        assert_error(
            &[start, frame],
            1024,
            ProtocolError::FragmentedControlFrame,
            1002,
        );
    }
}

#[test]
fn rejects_continuation_without_start() {
    for fin in [true, false] {
        let frame = mask_client_frame(OpCode::Continuation, fin, b"x", KEY);
        assert_error(&[frame], 1024, ProtocolError::UnexpectedContinuation, 1002);
    }
    // Also after a fragmented message has been completed.
    let frames = vec![
        mask_client_frame(OpCode::Text, false, b"a", KEY),
        mask_client_frame(OpCode::Continuation, true, b"b", KEY),
        mask_client_frame(OpCode::Continuation, true, b"c", KEY),
    ];
    assert_error(&frames, 1024, ProtocolError::UnexpectedContinuation, 1002);
}

#[test]
fn rejects_new_data_frame_during_fragmented_message() {
    for first in [OpCode::Text, OpCode::Binary] {
        for second in [OpCode::Text, OpCode::Binary] {
            for fin in [true, false] {
                let frames = vec![
                    mask_client_frame(first, false, b"a", KEY),
                    mask_client_frame(second, fin, b"b", KEY),
                ];
                assert_error(&frames, 1024, ProtocolError::ExpectedContinuation, 1002);
            }
        }
    }
}

#[test]
fn rejects_invalid_utf8_single_frame_with_1007() {
    let bad: [&[u8]; 7] = [
        b"\xff",
        b"abc\xfe",
        b"\xc0\x80",         // overlong NUL
        b"\xed\xa0\x80",     // UTF-16 surrogate
        b"\xf4\x90\x80\x80", // above U+10FFFF
        b"\xe2\x82",         // truncated
        b"\x80",             // lone continuation byte
    ];
    for payload in bad {
        let frame = mask_client_frame(OpCode::Text, true, payload, KEY);
        assert_error(&[frame], 1024, ProtocolError::InvalidUtf8, 1007);
    }
}

#[test]
fn rejects_invalid_utf8_after_reassembly_with_1007() {
    // Every fragment on its own could still become valid; the whole message is not.
    let frames = vec![
        mask_client_frame(OpCode::Text, false, b"ok \xe2", KEY),
        mask_client_frame(OpCode::Continuation, false, b"\x82", KEY),
        mask_client_frame(OpCode::Continuation, true, b"", KEY),
    ];
    assert_error(&frames, 1024, ProtocolError::InvalidUtf8, 1007);
    // A split character that is completed wrongly.
    let frames = vec![
        mask_client_frame(OpCode::Text, false, b"\xe2\x82", KEY),
        mask_client_frame(OpCode::Continuation, true, b"A", KEY),
    ];
    assert_error(&frames, 1024, ProtocolError::InvalidUtf8, 1007);
}

#[test]
fn rejects_text_fragment_that_can_never_be_valid_early() {
    let mut dec = Decoder::new(1024);
    let frame = mask_client_frame(OpCode::Text, false, b"abc\xff", KEY);
    assert_eq!(dec.decode(&frame), Err(ProtocolError::InvalidUtf8));
    // Binary data is not checked.
    let frames = vec![
        mask_client_frame(OpCode::Binary, false, b"\xff", KEY),
        mask_client_frame(OpCode::Continuation, true, b"\xfe", KEY),
    ];
    let mut dec = Decoder::new(1024);
    assert_eq!(
        decode_frames(&mut dec, &frames),
        Ok(vec![Message::Binary(vec![0xff, 0xfe])])
    );
}

#[test]
fn rejects_close_with_one_byte_payload() {
    let frame = mask_client_frame(OpCode::Close, true, &[0x03], KEY);
    assert_error(&[frame], 1024, ProtocolError::InvalidClosePayload, 1002);
}

#[test]
fn rejects_invalid_close_codes() {
    for code in [
        0u16, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let frame = mask_client_frame(OpCode::Close, true, &close_payload(code, b""), KEY);
        assert_error(&[frame], 1024, ProtocolError::InvalidCloseCode(code), 1002);
    }
}

#[test]
fn accepts_valid_close_codes() {
    let codes = (1000u16..=1003)
        .chain(1007..=1014)
        .chain([3000, 3999, 4000, 4999]);
    for code in codes {
        let frame = mask_client_frame(
            OpCode::Close,
            true,
            &close_payload(code, "bye ✓".as_bytes()),
            KEY,
        );
        assert_eq!(
            decode_single(&frame),
            Ok(Message::Close(Some((code, "bye ✓".into()))))
        );
        let frame = mask_client_frame(OpCode::Close, true, &close_payload(code, b""), KEY);
        assert_eq!(
            decode_single(&frame),
            Ok(Message::Close(Some((code, String::new()))))
        );
    }
}

#[test]
fn rejects_invalid_close_reason_utf8_with_1007() {
    for reason in [&b"\xff"[..], b"bye\xe2\x82", b"\xed\xa0\x80"] {
        let frame = mask_client_frame(OpCode::Close, true, &close_payload(1000, reason), KEY);
        assert_error(&[frame], 1024, ProtocolError::InvalidUtf8, 1007);
    }
}

#[test]
fn rejects_frame_over_limit_before_payload_arrives() {
    let limit = 1000;
    let too_big = Err(ProtocolError::MessageTooBig { limit });
    // 16-bit length: just the 4 length bytes, no masking key, no payload.
    let frame = mask_client_frame(OpCode::Binary, true, &vec![0; limit + 1], KEY);
    assert_eq!(Decoder::new(limit).decode(&frame[..4]), too_big);
    assert_eq!(
        Decoder::new(limit).decode(&frame[..3]),
        Ok(Decoded {
            consumed: 0,
            message: None
        })
    );
    // 7-bit length.
    let frame = mask_client_frame(OpCode::Text, true, &[b'a'; 11], KEY);
    assert_eq!(
        Decoder::new(10).decode(&frame[..2]),
        Err(ProtocolError::MessageTooBig { limit: 10 })
    );
    // 64-bit length: header only, announcing far more than will ever arrive.
    let mut header = vec![0x82, 0xFF];
    header.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    let err = Decoder::new(limit).decode(&header).unwrap_err();
    assert_eq!(Err(err.clone()), too_big);
    assert_eq!(err.close_code(), 1009);
    // Exactly at the limit is fine.
    let frame = mask_client_frame(OpCode::Binary, true, &vec![7; limit], KEY);
    let mut dec = Decoder::new(limit);
    assert_eq!(
        decode_frames(&mut dec, &[frame]),
        Ok(vec![Message::Binary(vec![7; limit])])
    );
}

#[test]
fn rejects_fragmented_total_over_limit() {
    let limit = 10;
    let mut dec = Decoder::new(limit);
    let first = mask_client_frame(OpCode::Text, false, b"123456", KEY);
    let second = mask_client_frame(OpCode::Continuation, false, b"7890", KEY);
    let third = mask_client_frame(OpCode::Continuation, true, b"X", KEY);
    assert_eq!(
        decode_frames(&mut dec, &[first.clone(), second.clone()]),
        Ok(vec![])
    );
    // The header alone of the fragment that pushes the total over the limit fails.
    assert_eq!(
        dec.decode(&third[..2]),
        Err(ProtocolError::MessageTooBig { limit })
    );
    // The same fragments fit when the last one is empty.
    let mut dec = Decoder::new(limit);
    let last = mask_client_frame(OpCode::Continuation, true, b"", KEY);
    assert_eq!(
        decode_frames(&mut dec, &[first, second, last]),
        Ok(vec![Message::Text("1234567890".into())])
    );
}

#[test]
fn rejects_64bit_length_with_msb_set() {
    let mut header = vec![0x82, 0xFF];
    header.extend_from_slice(&(1u64 << 63).to_be_bytes());
    let err = Decoder::new(usize::MAX).decode(&header).unwrap_err();
    assert_eq!(err, ProtocolError::InvalidLength);
    assert_eq!(err.close_code(), 1002);
}

#[test]
fn huge_limit_never_overflows() {
    let mut header = vec![0x82, 0xFF];
    header.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    header.extend_from_slice(&KEY);
    let d = Decoder::new(usize::MAX).decode(&header);
    assert!(matches!(
        d,
        Ok(Decoded {
            consumed: 0,
            message: None
        }) | Err(ProtocolError::MessageTooBig { .. })
    ));
}

#[test]
fn errors_map_to_close_codes_and_display() {
    let errors = [
        (ProtocolError::UnmaskedFrame, 1002),
        (ProtocolError::ReservedBits, 1002),
        (ProtocolError::ReservedOpcode(3), 1002),
        (ProtocolError::ControlFrameTooLong, 1002),
        (ProtocolError::FragmentedControlFrame, 1002),
        (ProtocolError::UnexpectedContinuation, 1002),
        (ProtocolError::ExpectedContinuation, 1002),
        (ProtocolError::InvalidLength, 1002),
        (ProtocolError::InvalidUtf8, 1007),
        (ProtocolError::InvalidCloseCode(1005), 1002),
        (ProtocolError::InvalidClosePayload, 1002),
        (ProtocolError::MessageTooBig { limit: 5 }, 1009),
    ];
    for (err, code) in errors {
        assert_eq!(err.close_code(), code, "{err:?}");
        assert!(!err.to_string().is_empty());
        let _: &dyn std::error::Error = &err;
    }
}

// ---------------------------------------------------------------- encoding

#[test]
fn header_lengths_at_125_126_65535_65536_boundaries() {
    let cases: [(usize, usize, &[u8]); 6] = [
        (0, 2, &[0x81, 0]),
        (125, 2, &[0x81, 125]),
        (126, 4, &[0x81, 126, 0, 126]),
        (65535, 4, &[0x81, 126, 0xFF, 0xFF]),
        (65536, 10, &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        (1 << 32, 10, &[0x81, 127, 0, 0, 0, 1, 0, 0, 0, 0]),
    ];
    for (len, header_len, bytes) in cases {
        let mut out = [0u8; 10];
        assert_eq!(
            write_header(OpCode::Text, len, &mut out),
            header_len,
            "len {len}"
        );
        assert_eq!(&out[..header_len], bytes, "len {len}");
        if len <= 65536 {
            let frame = encode_frame(OpCode::Text, &vec![b'a'; len]);
            assert_eq!(frame.len(), header_len + len);
            assert_eq!(&frame[..header_len], bytes);
        }
    }
}

#[test]
fn encoded_frames_are_unmasked_fin_frames() {
    assert_eq!(&text_frame(b"hi")[..], &[0x81, 2, b'h', b'i']);
    assert_eq!(&encode_frame(OpCode::Binary, &[9])[..], &[0x82, 1, 9]);
    assert_eq!(&ping_frame(b"")[..], &[0x89, 0]);
    assert_eq!(&pong_frame(b"x")[..], &[0x8A, 1, b'x']);
    assert_eq!(&close_frame(1000, "")[..], &[0x88, 2, 0x03, 0xE8]);
    assert_eq!(
        &close_frame(1001, "ab")[..],
        &[0x88, 4, 0x03, 0xE9, b'a', b'b']
    );
}

#[test]
fn close_frame_truncation_keeps_valid_utf8_and_125_bytes() {
    for unit in ["a", "é", "€", "😀", "a😀"] {
        for count in [0usize, 1, 30, 61, 62, 123, 200] {
            let reason = unit.repeat(count);
            let frame = close_frame(4000, &reason);
            let payload_len = usize::from(frame[1]);
            assert!(payload_len <= MAX_CONTROL_PAYLOAD);
            assert_eq!(frame.len(), 2 + payload_len);
            assert_eq!(&frame[2..4], &4000u16.to_be_bytes());
            let sent = std::str::from_utf8(&frame[4..]).expect("valid UTF-8");
            assert!(reason.starts_with(sent));
            // Nothing was cut that would have fit.
            let next = reason[sent.len()..].chars().next();
            if let Some(c) = next {
                assert!(sent.len() + c.len_utf8() > 123);
            }
            let masked = mask_server_frame(&frame, KEY);
            assert_eq!(
                decode_single(&masked),
                Ok(Message::Close(Some((4000, sent.into()))))
            );
        }
    }
}

#[test]
fn ping_and_pong_frames_truncate_to_125_bytes() {
    let long = vec![b'z'; 300];
    for frame in [ping_frame(&long), pong_frame(&long)] {
        assert_eq!(frame[1], 125);
        assert_eq!(frame.len(), 127);
    }
    assert_eq!(pong_frame(&long[..125]).len(), 127);
}

// ---------------------------------------------------------------- properties

fn valid_close_code() -> impl Strategy<Value = u16> {
    prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999]
}

fn control_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        vec(any::<u8>(), 0..=125).prop_map(Message::Ping),
        vec(any::<u8>(), 0..=125).prop_map(Message::Pong),
        Just(Message::Close(None)),
        (valid_close_code(), vec(any::<char>(), 0..=30))
            .prop_map(|(code, reason)| Message::Close(Some((code, reason.into_iter().collect())))),
    ]
}

fn data_message() -> impl Strategy<Value = Message> {
    let len = prop_oneof![8 => 0usize..140, 3 => 100usize..1200, 1 => 65_530usize..66_000];
    prop_oneof![
        len.prop_flat_map(|n| vec(any::<u8>(), n))
            .prop_map(Message::Binary),
        vec(any::<char>(), 0..150).prop_map(|c| Message::Text(c.into_iter().collect())),
        (vec(any::<char>(), 1..8), 16_000usize..17_000)
            .prop_map(|(c, n)| Message::Text(c.iter().cycle().take(n).collect())),
    ]
}

fn mask_key() -> impl Strategy<Value = [u8; 4]> {
    prop_oneof![1 => Just([0u8; 4]), 4 => any::<[u8; 4]>()]
}

#[derive(Debug, Clone)]
enum Item {
    Control(Message),
    /// A data message cut at `cuts` (sorted byte offsets), with control frames after
    /// some of its non-final fragments.
    Data {
        msg: Message,
        cuts: Vec<Index>,
        between: Vec<Option<Message>>,
    },
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        1 => control_message().prop_map(Item::Control),
        3 => (data_message(), vec(any::<Index>(), 0..5), vec(proptest::option::of(control_message()), 5))
            .prop_map(|(msg, cuts, between)| Item::Data { msg, cuts, between }),
    ]
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(prop_oneof![1usize..=3, 1usize..=200, 1usize..=9000], 1..8)
}

/// Build the client byte stream for `items` and the messages it must decode to.
fn build_stream(items: &[Item], keys: &[[u8; 4]]) -> (Vec<u8>, Vec<Message>) {
    let mut keys = keys.iter().copied().cycle();
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for item in items {
        match item {
            Item::Control(msg) => {
                let (opcode, payload) = message_parts(msg);
                stream.extend(mask_client_frame(
                    opcode,
                    true,
                    &payload,
                    keys.next().unwrap(),
                ));
                expected.push(msg.clone());
            }
            Item::Data { msg, cuts, between } => {
                let (opcode, payload) = message_parts(msg);
                let mut offsets: Vec<usize> =
                    cuts.iter().map(|c| c.index(payload.len() + 1)).collect();
                offsets.sort_unstable();
                offsets.push(payload.len());
                let mut start = 0;
                for (i, &end) in offsets.iter().enumerate() {
                    let last = i == offsets.len() - 1;
                    let op = if i == 0 { opcode } else { OpCode::Continuation };
                    stream.extend(mask_client_frame(
                        op,
                        last,
                        &payload[start..end],
                        keys.next().unwrap(),
                    ));
                    start = end;
                    if let (false, Some(Some(control))) = (last, between.get(i)) {
                        let (op, p) = message_parts(control);
                        stream.extend(mask_client_frame(op, true, &p, keys.next().unwrap()));
                        expected.push(control.clone());
                    }
                }
                expected.push(msg.clone());
            }
        }
    }
    (stream, expected)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn prop_fragmented_interleaved_stream_split_anywhere_decodes_to_original(
        items in vec(item(), 0..10),
        keys in vec(mask_key(), 1..6),
        chunks in chunk_sizes(),
    ) {
        let (stream, expected) = build_stream(&items, &keys);
        let mut dec = Decoder::new(1 << 20);
        let (messages, err, left) = feed(&mut dec, &stream, &chunks);
        prop_assert_eq!(err, None);
        prop_assert_eq!(left, 0);
        prop_assert_eq!(messages, expected);
        prop_assert!(!dec.in_fragmented_message());
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic_or_overconsume(
        bytes in vec(any::<u8>(), 0..600),
        limit in prop_oneof![0usize..300, Just(usize::MAX)],
        chunks in chunk_sizes(),
    ) {
        let _ = Decoder::frame_len(&bytes);
        let mut dec = Decoder::new(limit);
        let d = dec.decode(&bytes);
        if let Ok(d) = d {
            prop_assert!(d.consumed <= bytes.len());
        }
        // `feed` asserts the contract on every call.
        let mut dec = Decoder::new(limit);
        let _ = feed(&mut dec, &bytes, &chunks);
        // Calling again after an error must not panic either.
        let _ = dec.decode(&bytes);
    }

    #[test]
    fn prop_arbitrary_frames_never_panic_or_overconsume(
        frames in vec((any::<u8>(), prop::bool::weighted(0.9), vec(any::<u8>(), 0..200), any::<[u8; 4]>()), 0..12),
        corrupt in proptest::option::of((any::<Index>(), any::<u8>())),
        limit in 0usize..400,
        chunks in chunk_sizes(),
    ) {
        // Mostly valid-looking frames with random FIN/RSV/opcode bits.
        let mut stream: Vec<u8> = frames
            .iter()
            .flat_map(|(b0, masked, payload, key)| {
                // Usually clear the RSV bits so that decoding gets past the first check.
                let b0 = if b0 % 7 == 0 { *b0 } else { b0 & 0x8F };
                raw_client_frame(b0, *masked, payload, *key)
            })
            .collect();
        if let (Some((at, byte)), false) = (corrupt, stream.is_empty()) {
            let i = at.index(stream.len());
            stream[i] = byte;
        }
        let mut dec = Decoder::new(limit);
        let (messages, _err, _left) = feed(&mut dec, &stream, &chunks);
        for m in messages {
            if let Message::Close(Some((code, _))) = m {
                prop_assert!(is_valid_close_code(code));
            }
        }
    }

    #[test]
    fn prop_encoded_frame_masked_round_trips(
        msg in prop_oneof![data_message(), control_message()],
        key in mask_key(),
    ) {
        let (opcode, payload) = message_parts(&msg);
        let frame = encode_frame(opcode, &payload);
        prop_assert_eq!(frame[0], 0x80 | opcode.as_u8());
        prop_assert_eq!(frame[1] & 0x80, 0);
        prop_assert_eq!(Decoder::frame_len(&frame), Some(frame.len()));
        let masked = mask_server_frame(&frame, key);
        prop_assert_eq!(Decoder::frame_len(&masked), Some(masked.len()));
        let mut dec = Decoder::new(1 << 20);
        let d = dec.decode(&masked);
        prop_assert_eq!(d, Ok(Decoded { consumed: masked.len(), message: Some(msg) }));
    }
}
