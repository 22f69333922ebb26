// Hello in JavaScript (QuickJS): warden run examples/hello.js
console.log("hello from JavaScript");
