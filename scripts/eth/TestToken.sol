// SPDX-License-Identifier: Apache-2.0
// A minimal ERC-20 for signalhub's wallet-tier tests: the deployer receives the whole supply.
pragma solidity ^0.8.20;

contract TestToken {
    string public constant name = "signalhub test token";
    string public constant symbol = "SHT";
    uint8 public constant decimals = 18;
    uint256 public totalSupply;

    mapping(address => uint256) public balanceOf;

    event Transfer(address indexed from, address indexed to, uint256 value);

    constructor(uint256 supply) {
        totalSupply = supply;
        balanceOf[msg.sender] = supply;
        emit Transfer(address(0), msg.sender, supply);
    }

    function transfer(address to, uint256 value) external returns (bool) {
        require(to != address(0), "transfer to the zero address");
        uint256 held = balanceOf[msg.sender];
        require(held >= value, "transfer amount exceeds balance");
        unchecked {
            balanceOf[msg.sender] = held - value;
        }
        balanceOf[to] += value;
        emit Transfer(msg.sender, to, value);
        return true;
    }
}
