/*
 * src/http.ts without RegExp (src/chars.ts says why): its URL split must accept and refuse what
 * the RegExps it replaced did, and its response parsing (status line, Content-Length, chunked
 * sizes, Transfer-Encoding) must read a real Node HTTP server's answers as before.
 */
import test from "ava";
import * as http from "node:http";
import * as net from "node:net";
import type {AddressInfo} from "node:net";
import {httpGet, parseHttpUrl, type HttpResponse} from "../src/http.js";
import {createNodeHost} from "../hosts/node/host.js";
import {seededRandom} from "./helpers/fake-host.js";

/** The RegExp version parseHttpUrl replaced, for comparison. */
function byRegExp(url: string): unknown {
	const m = /^(https?):\/\/([^/?#\s]+)([^#\s]*)(#.*)?$/i.exec(url);
	if (!m) return "the URL is not an http:// or https:// URL";
	const secure = m[1].toLowerCase() === "https";
	if (m[2].includes("@")) return "the URL carries a user name or password, which this device does not send";
	const a = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(m[2]);
	if (!a) return "the URL's host or port is malformed";
	const host = a[1].startsWith("[") ? a[1].slice(1, -1) : a[1];
	const port = a[2] === undefined ? (secure ? 443 : 80) : Number(a[2]);
	if (!(port >= 1 && port <= 65535)) return "the URL's port is not 1 to 65535";
	let path = m[3] || "/";
	if (path.startsWith("?")) path = "/" + path;
	return {secure, host, port, path};
}

test("parseHttpUrl accepts and refuses what its RegExps did", t => {
	const fixed = [
		"http://a", "https://a/", "HTTP://A:80/x?y#z", "hTTps://h:443", "http://h:0/", "http://h:65535/p", "http://h:65536/",
		"http://h:123456/", "http://h:/", "http://:80/", "http://[::1]:8080/f", "http://[::1]/", "http://[]/", "http://[g::1]/",
		"http://[::1]x/", "http://[::1]:/", "http://u@h/", "http://u:p@h/", "http://h?q=1", "http://h/p q", "http://h/p#a b",
		"http://h/p#a\nb", "http://h/p\t", "ftp://h/", "http:/h", "http://", "http:// h/", "http://h:8a/", "http://h]/",
		"http://a.b-c_d.example.com:8883/adu/file.bin?sig=x%2F&se=1", "http://h/#", "http://h#f", "http://h\u00a0/",
		"https://x.blob.core.windows.net/c/f?sv=2020&sig=a%3D", "http://[1:2:3:4:5:6:7:8]:1/", "http://h:00080/",
	];
	const alphabet = [..."ahH:/?#@[]1 .\t\n%-_"];
	const random = seededRandom(12345);
	const generated: string[] = [];
	for (let i = 0; i < 4000; i++) {
		let s = random() < 0.5 ? "http://" : "https://";
		const n = Math.floor(random() * 10);
		for (let j = 0; j < n; j++) s += alphabet[Math.floor(random() * alphabet.length)];
		generated.push(s);
	}
	for (const url of [...fixed, ...generated]) t.deepEqual(parseHttpUrl(url), byRegExp(url), JSON.stringify(url));
});

function serve(handler: http.RequestListener): Promise<{server: http.Server; port: number}> {
	return new Promise(resolve => {
		const server = http.createServer(handler).listen(0, "127.0.0.1", () => resolve({server, port: (server.address() as AddressInfo).port}));
	});
}

function get(url: string): Promise<{response?: HttpResponse; body: string; error?: string}> {
	return new Promise(resolve => {
		let response: HttpResponse | undefined;
		const chunks: Buffer[] = [];
		const timer = setTimeout(() => resolve({response, body: "", error: "no end within 10 s"}), 10_000);
		httpGet(createNodeHost(), {url, roots: []}, {
			onResponse: r => { response = r; },
			onData: b => { chunks.push(Buffer.from(b)); },
			onEnd: () => { clearTimeout(timer); resolve({response, body: Buffer.concat(chunks).toString()}); },
			onError: e => { clearTimeout(timer); resolve({response, body: Buffer.concat(chunks).toString(), error: e.message}); },
		});
	});
}

test("httpGet reads Content-Length and chunked bodies and the status", async t => {
	const {server, port} = await serve((req, res) => {
		if (req.url === "/length") res.writeHead(206, {"Content-Length": "5"}).end("hello");
		else if (req.url === "/chunked") {
			res.writeHead(200, {"Transfer-Encoding": "gzip, chunked"});
			res.write("a".repeat(300));
			setTimeout(() => res.end("b"), 20);
		}
		else res.writeHead(404).end("none");
	});
	try {
		const length = await get(`http://127.0.0.1:${port}/length`);
		t.is(length.error, undefined);
		t.is(length.response?.status, 206);
		t.is(length.body, "hello");
		const chunked = await get(`http://127.0.0.1:${port}/chunked`);
		t.is(chunked.error, undefined);
		t.is(chunked.body, "a".repeat(300) + "b");
		const missing = await get(`http://127.0.0.1:${port}/other`);
		t.is(missing.response?.status, 404);
	}
	finally {
		server.close();
	}
});

test("httpGet refuses a malformed status line, Content-Length and chunk size, saying which", async t => {
	const answers = [
		["HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n", /status line/],
		["HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", /status line/],
		["HTTP/1.1 200x\r\nContent-Length: 0\r\n\r\n", /status line/],
		["HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello", /Content-Length/],
		["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", /chunk size/],
		["HTTP/1.1 200\r\nTransfer-Encoding: chunked\r\n\r\n5;name=v\r\nhello\r\n0\r\n\r\n", undefined],
	] as const;
	for (const [answer, error] of answers) {
		const server = net.createServer(socket => socket.once("data", () => socket.end(answer)));
		await new Promise<void>(r => server.listen(0, "127.0.0.1", r));
		try {
			const result = await get(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
			if (error) t.regex(result.error ?? "", error, JSON.stringify(answer));
			else {
				t.is(result.error, undefined, JSON.stringify(answer));
				t.is(result.body, "hello");
			}
		}
		finally {
			server.close();
		}
	}
});
