//! A DNS server for tests, on a loopback address: answers each query from a zone (name
//! and type to records), NXDOMAIN otherwise. Shared by the host tests and the command
//! line's; it runs on a thread of its own, so it serves blocking tests and async ones
//! alike, and stops after a minute without queries.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

pub type Zone = HashMap<(String, RecordType), Vec<RData>>;

/// Serves `zone` on `ip` (a port the system picks); its address.
pub fn serve(ip: &str, zone: Zone) -> SocketAddr {
    let socket = UdpSocket::bind((ip, 0)).unwrap();
    let addr = socket.local_addr().unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
            answer.metadata.recursion_desired = query.metadata.recursion_desired;
            answer.metadata.recursion_available = true;
            let mut found = false;
            for q in &query.queries {
                answer.add_query(q.clone());
                let key = (q.name().to_string().to_ascii_lowercase(), q.query_type());
                for data in zone.get(&key).into_iter().flatten() {
                    answer.add_answer(Record::from_rdata(q.name().clone(), 60, data.clone()));
                    found = true;
                }
            }
            if !found {
                answer.metadata.response_code = ResponseCode::NXDomain;
            }
            if let Ok(bytes) = answer.to_vec() {
                let _ = socket.send_to(&bytes, from);
            }
        }
    });
    addr
}

pub fn name(n: &str) -> Name {
    Name::from_ascii(n).unwrap()
}
