//! Tests of the compressor, the inflater and the decoder with permessage-deflate on.

use super::*;
use crate::frame::{Decoded, Decoder, Message, OpCode, ProtocolError, RSV1_BIT};
use flate2::{Compress, FlushCompress};

const KEY: [u8; 4] = [0x11, 0x5a, 0xc3, 0x07];
const LIMIT: usize = 64 << 10;

fn agreement(client_no_context_takeover: bool) -> Agreement {
    let offer = if client_no_context_takeover {
        "permessage-deflate; client_no_context_takeover"
    } else {
        "permessage-deflate"
    };
    negotiate([offer]).unwrap()
}

/// A masked client frame with the given first byte (FIN, RSV, opcode).
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&KEY);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    out
}

/// What a client compressor sends for one message: sync flush, tail removed. `deflate`
/// keeps its context between calls (client context takeover).
fn client_compress(deflate: &mut Compress, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 64);
    let start = deflate.total_in();
    loop {
        let used = (deflate.total_in() - start) as usize;
        deflate
            .compress_vec(&payload[used..], &mut out, FlushCompress::Sync)
            .unwrap();
        if (deflate.total_in() - start) as usize == payload.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// The payload of an unmasked server frame.
fn body(frame: &[u8]) -> &[u8] {
    match frame[1] {
        126 => &frame[4..],
        127 => &frame[10..],
        _ => &frame[2..],
    }
}

fn decode_all(dec: &mut Decoder, mut input: &[u8]) -> Result<Vec<Message>, ProtocolError> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let Decoded { consumed, message } = dec.decode(input)?;
        assert!(consumed > 0, "frame left incomplete");
        input = &input[consumed..];
        out.extend(message);
    }
    Ok(out)
}

/// A signal envelope like the server sends (about 300 bytes).
fn signal_envelope() -> Vec<u8> {
    br#"{"type":"publication","channel":"signals","epoch":"7f3c","seq":1842,"data":{"id":"sig_01HZX4","kind":"signal","symbol":"BTC-USD","side":"long","entry":67250.5,"stop":66100,"targets":[68400,69800],"confidence":0.82,"tier":"premium","note":"breakout above range high on volume","ts":"2026-12-02T07:15:26.104Z"}}"#.to_vec()
}

#[test]
fn compressed_frame_is_fin_rsv1_and_inflates_to_the_payload() {
    let payload = signal_envelope();
    let frame = Compressor::default().frame(OpCode::Text, &payload);
    assert_eq!(frame[0], 0x80 | RSV1_BIT | 0x1);
    assert_eq!(frame[1] & 0x80, 0, "server frames are unmasked");
    let body = body(&frame);
    assert!(body.len() < payload.len());
    // Inflated by flate2 directly, as a client would: tail appended.
    let mut wire = body.to_vec();
    wire.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(4096);
    flate2::Decompress::new(false)
        .decompress_vec(&wire, &mut out, flate2::FlushDecompress::Sync)
        .unwrap();
    assert_eq!(out, payload);
}

#[test]
fn every_compressed_frame_starts_a_fresh_context() {
    let mut compressor = Compressor::default();
    let payload = signal_envelope();
    let first = compressor.frame(OpCode::Text, &payload);
    let second = compressor.frame(OpCode::Text, &payload);
    // A context carried over would let the second refer back to the first and shrink.
    assert_eq!(first, second);
    // Each inflates on its own, with a fresh inflater.
    for frame in [first, second] {
        let masked = client_frame(frame[0], body(&frame));
        let mut dec = Decoder::with_deflate(LIMIT, &agreement(true));
        assert_eq!(
            decode_all(&mut dec, &masked),
            Ok(vec![Message::Text(
                String::from_utf8(payload.clone()).unwrap()
            )])
        );
    }
}

#[test]
fn large_and_incompressible_payloads_round_trip() {
    let mut compressor = Compressor::default();
    let noise: Vec<u8> = (0..70_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for payload in [vec![b'a'; 200_000], noise] {
        let frame = compressor.frame(OpCode::Binary, &payload);
        let masked = client_frame(frame[0], body(&frame));
        let mut dec = Decoder::with_deflate(1 << 20, &agreement(false));
        assert_eq!(
            decode_all(&mut dec, &masked),
            Ok(vec![Message::Binary(payload)])
        );
    }
}

#[test]
fn empty_payload_round_trips() {
    let frame = Compressor::default().frame(OpCode::Text, b"");
    assert_eq!(&frame[..], &[0x80 | RSV1_BIT | 0x1, 1, 0x00]);
    let masked = client_frame(frame[0], body(&frame));
    let mut dec = Decoder::with_deflate(LIMIT, &agreement(false));
    assert_eq!(
        decode_all(&mut dec, &masked),
        Ok(vec![Message::Text(String::new())])
    );
}

#[test]
fn decoder_inflates_messages_compressed_with_client_context_takeover() {
    let mut client = Compress::new(Compression::default(), false);
    let mut dec = Decoder::with_deflate(LIMIT, &agreement(false));
    let text = String::from_utf8(signal_envelope()).unwrap();
    let first = client_compress(&mut client, text.as_bytes());
    let second = client_compress(&mut client, text.as_bytes());
    // The second refers back to the first, so only a kept window inflates it.
    assert!(second.len() < first.len() / 2);
    for compressed in [first, second] {
        let frame = client_frame(0x80 | RSV1_BIT | 0x1, &compressed);
        assert_eq!(
            decode_all(&mut dec, &frame),
            Ok(vec![Message::Text(text.clone())])
        );
        assert!(dec.holds_inflate_state());
    }
}

#[test]
fn fragmented_compressed_message_with_ping_between_fragments() {
    let mut client = Compress::new(Compression::default(), false);
    let payload: Vec<u8> = (0..5000u32).flat_map(|i| i.to_le_bytes()).collect();
    let compressed = client_compress(&mut client, &payload);
    let (a, rest) = compressed.split_at(compressed.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut input = client_frame(RSV1_BIT | 0x2, a);
    input.extend(client_frame(0x89, b"hi"));
    input.extend(client_frame(0x00, b));
    input.extend(client_frame(0x80, c));
    let mut dec = Decoder::with_deflate(LIMIT, &agreement(false));
    assert_eq!(
        decode_all(&mut dec, &input),
        Ok(vec![
            Message::Ping(b"hi".to_vec()),
            Message::Binary(payload)
        ])
    );
}

#[test]
fn no_inflate_state_until_the_first_compressed_message() {
    let mut dec = Decoder::with_deflate(LIMIT, &agreement(false));
    let plain = client_frame(0x81, b"{\"type\":\"ping\"}");
    assert_eq!(decode_all(&mut dec, &plain).unwrap().len(), 1);
    assert!(!dec.holds_inflate_state());
    let frame = Compressor::default().frame(OpCode::Text, &signal_envelope());
    let masked = client_frame(frame[0], body(&frame));
    decode_all(&mut dec, &masked).unwrap();
    assert!(dec.holds_inflate_state());
}

#[test]
fn client_no_context_takeover_drops_inflate_state_after_each_message() {
    let mut dec = Decoder::with_deflate(LIMIT, &agreement(true));
    let frame = Compressor::default().frame(OpCode::Text, &signal_envelope());
    let masked = client_frame(frame[0], body(&frame));
    for _ in 0..3 {
        assert_eq!(decode_all(&mut dec, &masked).unwrap().len(), 1);
        assert!(!dec.holds_inflate_state());
    }
}

#[test]
fn deflate_bomb_fails_at_the_limit_with_1009() {
    let mut client = Compress::new(Compression::best(), false);
    let bomb = client_compress(&mut client, &vec![0u8; 50 << 20]);
    assert!(bomb.len() < LIMIT, "the bomb itself fits in one frame");
    let mut dec = Decoder::with_deflate(LIMIT, &agreement(false));
    let err = decode_all(&mut dec, &client_frame(0x80 | RSV1_BIT | 0x2, &bomb)).unwrap_err();
    assert_eq!(err, ProtocolError::MessageTooBig { limit: LIMIT });
    assert_eq!(err.close_code(), 1009);
}

#[test]
fn limit_applies_to_the_inflated_size_exactly() {
    let mut client = Compress::new(Compression::default(), false);
    let at_limit = client_compress(&mut client, &vec![b'x'; LIMIT]);
    let mut dec = Decoder::with_deflate(LIMIT, &agreement(false));
    assert_eq!(
        decode_all(&mut dec, &client_frame(0x80 | RSV1_BIT | 0x1, &at_limit)),
        Ok(vec![Message::Text("x".repeat(LIMIT))])
    );
    let mut client = Compress::new(Compression::default(), false);
    let over = client_compress(&mut client, &vec![b'x'; LIMIT + 1]);
    let mut dec = Decoder::with_deflate(LIMIT, &agreement(false));
    assert_eq!(
        decode_all(&mut dec, &client_frame(0x80 | RSV1_BIT | 0x1, &over)),
        Err(ProtocolError::MessageTooBig { limit: LIMIT })
    );
}

#[test]
fn rsv1_is_a_protocol_error_without_deflate() {
    let frame = Compressor::default().frame(OpCode::Text, &signal_envelope());
    let masked = client_frame(frame[0], body(&frame));
    let err = decode_all(&mut Decoder::new(LIMIT), &masked).unwrap_err();
    assert_eq!(err, ProtocolError::ReservedBits);
    assert_eq!(err.close_code(), 1002);
}

#[test]
fn rsv1_on_control_or_continuation_frames_and_rsv2_rsv3_are_rejected_with_deflate() {
    let cases = [
        vec![client_frame(0x80 | RSV1_BIT | 0x9, b"")],
        vec![client_frame(0x80 | RSV1_BIT | 0x8, &1000u16.to_be_bytes())],
        vec![
            client_frame(0x01, b"plain "),
            client_frame(0x80 | RSV1_BIT, b"x"),
        ],
        vec![client_frame(0x80 | 0x20 | 0x1, b"x")],
        vec![client_frame(0x80 | 0x10 | 0x2, b"x")],
        vec![client_frame(0x80 | RSV1_BIT | 0x20 | 0x1, b"x")],
        vec![client_frame(0x80 | RSV1_BIT | 0x3, b"x")],
    ];
    for frames in cases {
        let mut dec = Decoder::with_deflate(LIMIT, &agreement(false));
        let input = frames.concat();
        let err = decode_all(&mut dec, &input).unwrap_err();
        assert!(
            matches!(
                err,
                ProtocolError::ReservedBits | ProtocolError::ReservedOpcode(_)
            ),
            "{err:?}"
        );
        assert_eq!(err.close_code(), 1002);
    }
}

#[test]
fn invalid_deflate_data_closes_with_1007() {
    // BTYPE 11 is reserved in DEFLATE.
    let mut dec = Decoder::with_deflate(LIMIT, &agreement(false));
    let err = decode_all(
        &mut dec,
        &client_frame(0x80 | RSV1_BIT | 0x2, &[0xff, 0xff, 0xff]),
    )
    .unwrap_err();
    assert_eq!(err, ProtocolError::InvalidCompressedData);
    assert_eq!(err.close_code(), 1007);
    assert_eq!(err.to_string(), "compressed message is not valid DEFLATE");
}

#[test]
fn compressed_text_that_inflates_to_invalid_utf8_closes_with_1007() {
    let mut client = Compress::new(Compression::default(), false);
    let compressed = client_compress(&mut client, b"ok \xff\xfe not utf-8");
    let mut dec = Decoder::with_deflate(LIMIT, &agreement(false));
    let err = decode_all(&mut dec, &client_frame(0x80 | RSV1_BIT | 0x1, &compressed)).unwrap_err();
    assert_eq!(err, ProtocolError::InvalidUtf8);
    assert_eq!(err.close_code(), 1007);
}

#[test]
fn uncompressed_messages_still_work_on_a_deflate_connection() {
    let mut dec = Decoder::with_deflate(LIMIT, &agreement(false));
    let mut input = client_frame(0x01, b"hel");
    input.extend(client_frame(0x80, b"lo"));
    assert_eq!(
        decode_all(&mut dec, &input),
        Ok(vec![Message::Text("hello".into())])
    );
    assert!(dec.deflate());
    assert!(!Decoder::new(LIMIT).deflate());
}

#[test]
fn a_final_deflate_block_resets_the_stream_for_the_next_message() {
    // Some clients end each message with BFINAL set (flush Finish).
    let mut dec = Decoder::with_deflate(LIMIT, &agreement(false));
    for text in ["first message", "second message"] {
        let mut deflate = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(256);
        deflate
            .compress_vec(text.as_bytes(), &mut out, FlushCompress::Finish)
            .unwrap();
        assert_eq!(
            decode_all(&mut dec, &client_frame(0x80 | RSV1_BIT | 0x1, &out)),
            Ok(vec![Message::Text(text.into())])
        );
    }
}
